"""OverflowMonitor: count wraps, saturations, clipped weights and dead/saturated neurons.

Loihi's current ``u`` WRAPS modulo ``2**24`` and its voltage ``v`` SATURATES at
``+-(2**23 - 1)``; a float network never does either, so a network that overflows on a
monitoring batch behaves differently on the chip from how it trains in float. The monitor
exports the current network to a :class:`~snntorch_loihi.ir.LoihiNetwork` and steps it with
the fixed-point core (:func:`count_overflows`), counting per layer where that happens.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..fixed import (
    current_decay_factor,
    decay,
    effective_bias,
    saturate_voltage,
    voltage_decay_factor,
    weight_grid,
    wrap_current,
)
from ..ir import LoihiNetwork, LoihiSynapse
from ..spec import LOIHI
from .base import (
    Callback,
    check_non_negative_int,
    check_positive_int,
    clear_hidden_states,
    to_device_of,
)

__all__ = ["LayerOverflow", "OverflowWarning", "OverflowMonitor", "count_overflows",
           "count_clipped_weights"]


class OverflowWarning(UserWarning):
    """A layer wraps its current, saturates its voltage or clips weights past a set limit."""


@dataclass(frozen=True)
class LayerOverflow:
    """Counts of one layer on the monitoring batch (events are ``(step, sample, neuron)``).

    Attributes:
        current_wraps: events where the current before its wrap, ``rs0(u * (4096 - du - 1)) +
            (a_in << 6)``, left Loihi's 24 bits (for a conv synapse also the accumulator's own
            24-bit wrap).
        voltage_saturations: events where ``rs0(v * (4096 - dv)) + u + bias`` was clipped to
            ``+-(2**23 - 1)``.
        clipped_weights: float weights of the synapses into this layer outside the range of
            Lava's weight grid (their mantissa was clipped to the grid's end).
        never_fire: neurons without a spike in the layer's response window, on every sample.
        always_fire: neurons that spike at every step of the window, on every sample.
        neurons: the population's size.
        spike_rate: mean spikes per neuron per step in the window.
    """

    current_wraps: int = 0
    voltage_saturations: int = 0
    clipped_weights: int = 0
    never_fire: int = 0
    always_fire: int = 0
    neurons: int = 0
    spike_rate: float = 0.0


COUNTS = tuple(f.name for f in fields(LayerOverflow) if f.type in ("int", int) and f.name != "neurons")


def _accumulate(syn: LoihiSynapse, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a_in, wraps)``: the next step's input from spikes ``s`` ``(B, *in)`` and the events
    where a conv accumulator wrapped (Lava's Dense does not wrap its sum)."""
    if syn.num_message_bits == 0:
        s = (s != 0).to(torch.int64)
    batch = s.shape[0]
    w = torch.as_tensor(np.asarray(syn.weight_mant), dtype=torch.int64)
    if syn.kind == "dense":
        acc = s.reshape(batch, -1) @ w.T
        e = syn.weight_exp
        acc = acc * (1 << e) if e >= 0 else acc >> (-e)  # floor of the sum, as Lava
        wraps = torch.zeros_like(acc, dtype=torch.bool)
    else:
        acc = F.conv2d(s.reshape(batch, *syn.in_shape).to(torch.float64), w.to(torch.float64),
                       None, syn.stride, syn.padding, syn.dilation, syn.groups).to(torch.int64)
        wrapped = wrap_current(acc)
        wraps, acc = wrapped != acc, wrapped
    return acc.reshape(batch, *syn.out_shape), wraps.reshape(batch, *syn.out_shape)


@torch.no_grad()
def count_overflows(net: LoihiNetwork, x: torch.Tensor | np.ndarray,
                    steps: int | None = None) -> dict[str, LayerOverflow]:
    """Step ``net`` on ``x`` with Lava's integer arithmetic and timing, counting overflows.

    The arithmetic and timing are those of :func:`snntorch_loihi.fixed.simulate` (one step of
    delay per synapse, recurrent input from the previous step, biases from step 0), in int64,
    so the sums before a wrap or a saturation are exact. Layer ``k`` (0-based) answers input
    step ``t`` at step ``t + k + 1``; its response window is steps ``k + 1 .. T + k``.

    Args:
        net: the network.
        x: ``(T, B, *net.input_shape)`` integer-valued input (spikes or graded payloads).
        steps: steps to run; default ``T + net.delay`` (every layer's full window).

    Raises:
        ValueError: ``x`` does not have the shape ``(T, B, *net.input_shape)``.

    Returns:
        ``{layer name: LayerOverflow}`` in network order (``clipped_weights`` is 0: the IR holds
        weights that are on the grid already; see :func:`count_clipped_weights`).

    Example:
        >>> from snntorch_loihi.ir import LoihiLayer, LoihiNeuron
        >>> syn = LoihiSynapse("dense", np.full((1, 5), 254), in_shape=(5,), out_shape=(1,),
        ...                    weight_exp=7)       # 5 spikes add 5 * 254 << 7 << 6 > 2**23 to u
        >>> ir = LoihiNetwork((5,), (LoihiLayer("l0", syn, LoihiNeuron((1,), 4095, 0, 1000)),))
        >>> c = count_overflows(ir, torch.ones(3, 1, 5))["l0"]
        >>> c.current_wraps, c.never_fire        # u wraps to a negative value: no spikes
        (3, 1)
    """
    xi = torch.as_tensor(x).to(torch.int64)
    if xi.dim() != 2 + len(net.input_shape) or tuple(xi.shape[2:]) != tuple(net.input_shape):
        raise ValueError(
            f"count_overflows: x must have shape (T, B, *{tuple(net.input_shape)}), got "
            f"{tuple(xi.shape)}. Put time first and batch second."
        )
    n_in, batch = xi.shape[0], xi.shape[1]
    steps = n_in + net.delay if steps is None else int(steps)
    shapes = [tuple(layer.neuron.shape) for layer in net.layers]
    u = [torch.zeros((batch, *s), dtype=torch.int64) for s in shapes]
    v = [torch.zeros_like(z) for z in u]
    ff = [torch.zeros_like(z) for z in u]
    ff_wraps = [torch.zeros_like(z, dtype=torch.bool) for z in u]
    rec = [torch.zeros_like(z) for z in u]
    wraps = [0] * len(shapes)
    sats = [0] * len(shapes)
    spikes_in_window = [torch.zeros((batch, *s), dtype=torch.int64) for s in shapes]
    zero_in = torch.zeros((batch, *net.input_shape), dtype=torch.int64)
    biases = [effective_bias(torch.as_tensor(np.asarray(layer.neuron.bias_mant), dtype=torch.int64),
                             torch.as_tensor(np.asarray(layer.neuron.bias_exp), dtype=torch.int64))
              for layer in net.layers]
    for t in range(steps):
        inp = xi[t] if t < n_in else zero_in
        for k, layer in enumerate(net.layers):
            n = layer.neuron
            a_in = ff[k] + rec[k]
            wraps[k] += int(ff_wraps[k].sum())
            ff[k], ff_wraps[k] = _accumulate(layer.synapse, inp)
            u_pre = decay(u[k], current_decay_factor(int(n.du))) + a_in * (1 << LOIHI.act_shift)
            u[k] = wrap_current(u_pre)
            wraps[k] += int((u[k] != u_pre).sum())
            v_pre = decay(v[k], voltage_decay_factor(int(n.dv))) + u[k] + biases[k]
            v[k] = saturate_voltage(v_pre)
            sats[k] += int((v[k] != v_pre).sum())
            s = (v[k] > int(n.vth) * (1 << LOIHI.vth_shift)).to(torch.int64)
            if n.reset != "none":
                v[k] = torch.where(s != 0, torch.zeros_like(v[k]), v[k])
            if layer.recurrent is not None:
                rec[k], rec_wraps = _accumulate(layer.recurrent, s)
                ff_wraps[k] = ff_wraps[k] | rec_wraps
            if k + 1 <= t <= n_in + k:
                spikes_in_window[k] += s
            inp = s
    out = {}
    for k, layer in enumerate(net.layers):
        window = max(0, min(steps, n_in + k + 1) - (k + 1))
        per_neuron = spikes_in_window[k].sum(0)
        size = per_neuron.numel()
        out[layer.name] = LayerOverflow(
            current_wraps=wraps[k],
            voltage_saturations=sats[k],
            never_fire=int((per_neuron == 0).sum()),
            always_fire=int((per_neuron == window * batch).sum()) if window else 0,
            neurons=size,
            spike_rate=float(per_neuron.sum()) / (size * batch * window) if window and size else 0.0,
        )
    return out


@torch.no_grad()
def count_clipped_weights(module: nn.Module) -> int:
    """Float weights of a quantized synapse outside its grid's range (their mantissa clips).

    Uses the synapse's public attributes (``weight``, ``scale_exp``, ``weight_exp``,
    ``num_weight_bits``, ``sign_mode``) and the grid of
    :func:`~snntorch_loihi.fixed.weight_grid`: a weight clips when its rounded mantissa
    ``round(w * 2**(k - 6 - weight_exp) / step) * step`` lies outside ``[lo, hi]``.
    """
    lo, hi, step = weight_grid(module.num_weight_bits, module.sign_mode)
    w = module.weight.detach().to(torch.float64)
    x = torch.round(w * 2.0 ** (module.scale_exp - LOIHI.act_shift - module.weight_exp) / step) * step
    return int(((x < lo) | (x > hi)).sum())


@torch.no_grad()
def _synapses_by_neuron(net: nn.Module, step: torch.Tensor) -> dict[str, list[nn.Module]]:
    """``{neuron path: synapses feeding it}``: one step of ``net`` (hidden states cleared before
    and after) with hooks; each neuron gets the synapses called since the previous neuron, plus
    its own recurrent ones."""
    from ..nn import QuantNeuronMixin, QuantSynapseMixin

    paths = {m: p for p, m in net.named_modules()}
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: order.append(mod))
             for m in net.modules() if isinstance(m, QuantNeuronMixin | QuantSynapseMixin)]
    was_training = net.training
    try:
        clear_hidden_states(net)
        net.eval()
        net(step)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
        clear_hidden_states(net)
    own = {n: [s for s in n.modules() if s is not n and isinstance(s, QuantSynapseMixin)]
           for n in net.modules() if isinstance(n, QuantNeuronMixin)}
    inner = {id(s) for syns in own.values() for s in syns}  # recurrent synapses
    out: dict[str, list[nn.Module]] = {}
    pending: list[nn.Module] = []
    for m in order:
        if isinstance(m, QuantNeuronMixin):
            out.setdefault(paths[m], pending + own[m])
            pending = []
        elif id(m) not in inner:
            pending.append(m)
    return out


def clipped_per_layer(net: nn.Module, step: torch.Tensor) -> dict[str, int]:
    """Clipped weights (:func:`count_clipped_weights`) of the synapses into each neuron layer,
    keyed by the neuron's path in ``net`` (the layer names of ``extract``)."""
    return {path: sum(count_clipped_weights(s) for s in syns)
            for path, syns in _synapses_by_neuron(net, step).items()}


class OverflowMonitor(Callback):
    """Every ``every`` epochs, count overflows of the network on a fixed monitoring batch.

    The network is exported with ``snntorch_loihi.export.extract(net, sample)`` (the registers
    its quantized forward uses) and stepped with :func:`count_overflows`; clipped weights come
    from the synapse modules (:func:`count_clipped_weights`). Each check appends
    ``{"epoch": e, "layers": {name: counts}}`` to :attr:`history`. If a watched count of any
    layer exceeds ``warn_above`` it warns (:class:`OverflowWarning`); above ``stop_above`` it
    asks the loop to stop.

    Args:
        sample: ``(T, B, *input_shape)`` monitoring batch of spikes (a few samples suffice).
        every: check after epochs ``every - 1, 2 * every - 1, ...``.
        warn_above: warn when a watched count of a layer is larger; None never warns.
        stop_above: request a stop when a watched count is larger; None never stops.
        watch: the counts the limits apply to, names of :class:`LayerOverflow` fields.

    Raises:
        ValueError: ``sample`` is not a ``(T, B, ...)`` tensor, a count or limit is negative,
            or ``watch`` names an unknown count.
    """

    def __init__(self, sample: torch.Tensor, every: int = 1, warn_above: int | None = 0,
                 stop_above: int | None = None,
                 watch: Sequence[str] = ("current_wraps", "voltage_saturations")) -> None:
        name = "OverflowMonitor"
        if not torch.is_tensor(sample) or sample.dim() < 3:
            got = tuple(sample.shape) if torch.is_tensor(sample) else type(sample).__name__
            raise ValueError(
                f"{name}: sample must be a (T, B, *input_shape) tensor of spikes, got {got}."
            )
        check_positive_int(name, "every", every)
        check_non_negative_int(name, "warn_above", warn_above, allow_none=True)
        check_non_negative_int(name, "stop_above", stop_above, allow_none=True)
        watch = (watch,) if isinstance(watch, str) else tuple(watch)
        unknown = [w for w in watch if w not in COUNTS]
        if unknown or not watch:
            raise ValueError(
                f"{name}: watch must name counts among {list(COUNTS)}, got {list(watch)}."
            )
        self.sample = sample.detach().cpu()
        self.every, self.warn_above, self.stop_above, self.watch = every, warn_above, stop_above, watch
        self.history: list[dict[str, Any]] = []
        self._fresh: dict[str, float] = {}

    def due(self, epoch: int) -> bool:
        """True if the monitor checks after epoch ``epoch``."""
        return (epoch + 1) % self.every == 0

    def measure(self, net: nn.Module) -> dict[str, LayerOverflow]:
        """Counts of ``net`` on the monitoring batch (does not change ``net``)."""
        from ..export.extract import extract

        clear_hidden_states(net)
        step = to_device_of(net, self.sample[0])
        ir = extract(net, step)
        counts = count_overflows(ir, self.sample)
        clipped = clipped_per_layer(net, step)
        return {name: replace(c, clipped_weights=clipped.get(name, 0)) for name, c in counts.items()}

    def decide(self, counts: Mapping[str, LayerOverflow]) -> tuple[list[str], bool]:
        """``(offenders, stop)``: ``"<layer>.<count>=<n>"`` past ``warn_above`` and whether a
        watched count passes ``stop_above`` (pure)."""
        offenders, stop = [], False
        for layer, c in counts.items():
            for key in self.watch:
                n = getattr(c, key)
                if self.warn_above is not None and n > self.warn_above:
                    offenders.append(f"{layer}.{key}={n}")
                if self.stop_above is not None and n > self.stop_above:
                    stop = True
        return offenders, stop

    def check(self, net: nn.Module, epoch: int) -> tuple[dict[str, LayerOverflow], bool]:
        """Measure, record, warn; returns the counts and whether to stop."""
        counts = self.measure(net)
        offenders, stop = self.decide(counts)
        self.history.append({"epoch": epoch, "layers": {k: asdict(c) for k, c in counts.items()},
                             "stop": stop})
        if offenders:
            stopping = f" Stopping (stop_above={self.stop_above})." if stop else ""
            warnings.warn(
                f"OverflowMonitor: epoch {epoch}: counts above warn_above={self.warn_above}: "
                f"{', '.join(offenders)}.{stopping} Lower the weights' or inputs' range, or "
                f"recalibrate (a smaller scale_exp).",
                OverflowWarning, stacklevel=2,
            )
        return counts, stop

    def on_epoch_end(self, net: nn.Module, epoch: int, metrics: Mapping[str, float]) -> bool:
        self._fresh = {}
        if not self.due(epoch):
            return False
        counts, stop = self.check(net, epoch)
        self._fresh = {f"overflow/{layer}/{key}": float(v)
                       for layer, c in counts.items() for key, v in asdict(c).items()}
        return stop

    def log_dict(self) -> dict[str, float]:
        """``{"overflow/<layer>/<count>": value}`` measured by the latest ``on_epoch_end``."""
        return dict(self._fresh)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [dict(h) for h in state["history"]]
