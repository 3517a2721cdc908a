"""A pure-torch reference of a :class:`~snntorch_loihi.ir.LoihiNetwork` with Lava's timing.

:func:`simulate` runs the integer arithmetic of :mod:`snntorch_loihi.fixed` (``cuba_step``,
``dense_accumulate``, ``conv_accumulate``, ``effective_bias``) step by step, exactly as Lava's
``fixed_pt`` processes do when chained ``RingBuffer -> Dense/Conv -> LIF -> Dense/Conv -> LIF``:

- at step ``t`` the input ring buffer sends column ``x[t]`` (zeros for ``t >= T``);
- every feed-forward synapse delays by one step: at step ``t`` it delivers what it accumulated
  from its input at step ``t - 1`` (zeros at ``t = 0``);
- a recurrent Dense delivers ``W_rec @ s[t - 1]`` into the same ``a_in`` (Lava sums the ports);
- biases integrate from step 0;
- a population with ``reset == "none"`` keeps ``v`` after a spike (Lava's LIF always resets, so
  such a layer matches Lava only while it does not spike);
- a Dense fed by a ``(C, H, W)`` population sees its spikes flattened in PyTorch C-order.

A binary synapse (``num_message_bits == 0``) counts any nonzero input as a spike, as Lava's
Dense and Conv do (``s_in.astype(bool)``); a graded synapse multiplies by the integer payload.
All states are int64 tensors.

Example:
    >>> import numpy as np, torch
    >>> from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
    >>> syn = LoihiSynapse("dense", np.array([[100]]), in_shape=(1,), out_shape=(1,))
    >>> net = LoihiNetwork((1,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 4095, 0, 150)),))
    >>> r = simulate(net, torch.ones(3, 1, 1))
    >>> r["l0"].v[:, 0, 0].tolist()         # one step of delay, then 6400, 12800 > 9600: spike
    [0, 6400, 0, 6400]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import RegisterRangeError
from ..ir import LoihiLayer, LoihiNetwork, LoihiSynapse
from .check import check_int_range
from .neuron import cuba_step, cuba_subthreshold, effective_bias, fire
from .synapse import conv_accumulate, dense_accumulate

__all__ = ["LayerTrace", "SimResult", "simulate"]


@dataclass(frozen=True)
class LayerTrace:
    """The recorded states of one population, each ``(steps, B, *neuron.shape)`` int64.

    ``v`` is after the reset (what Lava's Monitor shows). A field is None if it was not recorded.
    """

    s: torch.Tensor | None
    u: torch.Tensor | None
    v: torch.Tensor | None


@dataclass(frozen=True)
class SimResult:
    """Per-layer traces of a run, in network order; index by layer name or position."""

    layers: dict[str, LayerTrace]

    def __getitem__(self, key: str | int) -> LayerTrace:
        if isinstance(key, int):
            return list(self.layers.values())[key]
        return self.layers[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def output(self) -> torch.Tensor | None:
        """Spikes of the last layer, ``(steps, B, *shape)``."""
        return self[-1].s

    def mismatches(self, other: SimResult) -> list[str]:
        """Names ``"<layer>.<state>"`` whose recorded tensors differ (exactly) between two runs."""
        bad = []
        for name, trace in self.layers.items():
            for field_name in ("s", "u", "v"):
                a = getattr(trace, field_name)
                b = getattr(other.layers[name], field_name) if name in other.layers else None
                if a is None or b is None:
                    continue
                if a.shape != b.shape or not torch.equal(a.to(torch.int64), b.to(torch.int64)):
                    bad.append(f"{name}.{field_name}")
        return bad


def _as_int_input(x: torch.Tensor | np.ndarray, net: LoihiNetwork, check: bool) -> torch.Tensor:
    x = torch.as_tensor(x)
    shape = tuple(net.input_shape)
    if x.dim() != 2 + len(shape) or tuple(x.shape[2:]) != shape:
        raise RegisterRangeError(
            f"simulate: x must have shape (T, B, *{shape}), got {tuple(x.shape)}. Put time first "
            f"and batch second."
        )
    if check:
        check_int_range(x, "input", -(2**31), 2**31 - 1, where="simulate",
                        hint="Lava's RingBuffer sends int32 payloads.")
    return x.to(torch.int64)


def _accumulate(syn: LoihiSynapse, s: torch.Tensor, check: bool) -> torch.Tensor:
    """``(B, *in)`` spikes or payloads -> ``(B, *out)`` integer ``a_in`` of the next step."""
    graded = syn.num_message_bits > 0
    if not graded:
        s = (s != 0).to(torch.int64)
    batch = s.shape[0]
    w = torch.as_tensor(np.asarray(syn.weight_mant), dtype=torch.int64)
    if syn.kind == "dense":
        acc = dense_accumulate(s.reshape(batch, -1), w, syn.weight_exp, graded=graded,
                               check=check)
    elif syn.kind == "conv":
        acc = conv_accumulate(s.reshape(batch, *syn.in_shape), w, stride=syn.stride,
                              padding=syn.padding, dilation=syn.dilation, groups=syn.groups,
                              graded=graded, check=check)
    else:
        raise RegisterRangeError(
            f"simulate: synapse kind must be 'dense' or 'conv', got {syn.kind!r}."
        )
    return acc.reshape(batch, *syn.out_shape)


def _layer_registers(layer: LoihiLayer) -> tuple[int, int, int, torch.Tensor, torch.Tensor]:
    n = layer.neuron
    shape = tuple(n.shape)
    bias_mant = torch.as_tensor(np.asarray(n.bias_mant), dtype=torch.int64).expand(shape)
    bias_exp = torch.as_tensor(np.asarray(n.bias_exp), dtype=torch.int64).expand(shape)
    return int(n.du), int(n.dv), int(n.vth), bias_mant, bias_exp


def simulate(
    net: LoihiNetwork,
    x: torch.Tensor | np.ndarray,
    *,
    steps: int | None = None,
    check: bool = True,
) -> SimResult:
    """Run ``net`` on ``x`` with Lava's integer arithmetic and timing.

    Args:
        net: the network (registers as Lava's ``fixed_pt`` processes take them).
        x: ``(T, B, *net.input_shape)`` integer-valued input (binary spikes or graded payloads).
        steps: number of steps to run; default ``T + net.delay`` (zero input after ``T``), so
            that the last layer answers every input column.
        check: validate registers and ranges (raises
            :class:`~snntorch_loihi.errors.RegisterRangeError`); ``False`` skips the checks.

    Returns:
        :class:`SimResult` with ``s``, ``u``, ``v`` of every layer, each
        ``(steps, B, *neuron.shape)`` int64, ``v`` after the reset.

    Raises:
        RegisterRangeError: a register or input outside the hardware range, or a wrong shape.
    """
    if check:
        net.validate()
    xi = _as_int_input(x, net, check)
    n_in, batch = xi.shape[0], xi.shape[1]
    steps = n_in + net.delay if steps is None else int(steps)
    if steps < 0:
        raise RegisterRangeError(f"simulate: steps must be >= 0, got {steps}.")

    regs = [_layer_registers(layer) for layer in net.layers]
    shapes = [tuple(layer.neuron.shape) for layer in net.layers]
    zeros = [torch.zeros((batch, *shape), dtype=torch.int64) for shape in shapes]
    u = list(zeros)
    v = list(zeros)
    ff_buf = list(zeros)  # a_in each feed-forward synapse delivers at the next step
    rec_buf = list(zeros)
    rec_s = [torch.zeros((steps, batch, *shape), dtype=torch.int64) for shape in shapes]
    rec_u = [torch.zeros_like(r) for r in rec_s]
    rec_v = [torch.zeros_like(r) for r in rec_s]
    x_zero = torch.zeros((batch, *net.input_shape), dtype=torch.int64)

    for t in range(steps):
        inp = xi[t] if t < n_in else x_zero
        for k, layer in enumerate(net.layers):
            du, dv, vth, bias_mant, bias_exp = regs[k]
            a_in = ff_buf[k] + rec_buf[k]
            ff_buf[k] = _accumulate(layer.synapse, inp, check)
            if layer.neuron.reset == "none":  # a membrane readout: no reset
                bias = effective_bias(bias_mant, bias_exp)
                u[k], v[k] = cuba_subthreshold(a_in, u[k], v[k], du=du, dv=dv, bias=bias,
                                               check=check)
                s = fire(v[k], vth)
            else:
                s, u[k], v[k] = cuba_step(a_in, u[k], v[k], du=du, dv=dv, vth=vth,
                                          bias_mant=bias_mant, bias_exp=bias_exp, check=check)
            if layer.recurrent is not None:
                rec_buf[k] = _accumulate(layer.recurrent, s, check)
            rec_s[k][t], rec_u[k][t], rec_v[k][t] = s, u[k], v[k]
            inp = s
    return SimResult({
        layer.name: LayerTrace(rec_s[k], rec_u[k], rec_v[k]) for k, layer in enumerate(net.layers)
    })

