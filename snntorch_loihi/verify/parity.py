"""``verify``: run the same inputs through the training-side model and through Lava, compare.

What is compared (for every layer, every step of ``T + delay``, every sample):

- reference side, for a torch network: the quantization-aware forward in **quantized mode**,
  stepped ``T + delay_steps(net)`` times with zero input after ``T`` (states reset with
  ``snntorch.utils.reset`` first). Forward hooks on every QuantAware neuron record the spikes it
  returns, ``v = mem * 2**scale_exp`` (exact integers) and ``u``: ``syn * 2**scale_exp`` for
  Synaptic; for Leaky / RLeaky (``du = 4095``: no current memory) ``u = wrap24(a_in << 6)`` from
  the hooked (delayed) synaptic input plus the hooked recurrent output.
- reference side, for a :class:`~snntorch_loihi.ir.LoihiNetwork` or NIR graph:
  :func:`snntorch_loihi.fixed.simulate`.
- hardware side: the network as exported (``export`` -> NIR graph -> ``from_nir_graph``: the
  registers Lava gets) on Lava's bit-accurate ``fixed_pt`` simulation, all samples on one
  compiled network: ``backend="lava"`` builds Lava processes
  (:class:`~snntorch_loihi.lava.LavaNetwork`), ``backend="netx"`` writes the netx HDF5 with
  :func:`~snntorch_loihi.lava.netx.save_netx` and runs it through lava-dl's netx loader.
- wraps / saturations: counted in the reference integer arithmetic
  (:func:`snntorch_loihi.callbacks.overflow.count_overflows`) on the exported network.
- float drift (optional): Lava's ``floating_pt`` models on the float parameters, spikes vs
  fixed point. For reference only; not part of ``exact``.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from ..errors import RegisterRangeError
from ..ir import LoihiNetwork
from .report import ParityReport, compare_layer

if TYPE_CHECKING:  # pragma: no cover
    from ..fixed.network import SimResult

__all__ = ["verify", "record_torch"]


def _time_first(x: torch.Tensor, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, bool]:
    """``(T, B, *in)``; True if a batch axis was added."""
    if x.dim() == 1 + len(input_shape) and tuple(x.shape[1:]) == tuple(input_shape):
        return x.unsqueeze(1), True
    if x.dim() != 2 + len(input_shape) or tuple(x.shape[2:]) != tuple(input_shape):
        raise RegisterRangeError(
            f"verify: inputs must have shape (T, B, *{tuple(input_shape)}) or "
            f"(T, *{tuple(input_shape)}) (time first), got {tuple(x.shape)}.")
    return x, False


def record_torch(net: nn.Module, x: torch.Tensor, steps: int) -> SimResult:
    """Step a quantization-aware network in quantized mode; ``s``, ``u``, ``v`` of every neuron.

    Args:
        net: a network of :mod:`snntorch_loihi.nn` layers (its quantized flags are restored).
        x: ``(T, B, *in)`` input, time first.
        steps: steps to run (``T + delay_steps(net)``), zero input after ``T``.

    Returns:
        A :class:`~snntorch_loihi.fixed.SimResult` keyed by the neuron modules' paths, int64
        tensors ``(steps, B, *shape)``.
    """
    from snntorch import utils

    from ..fixed.network import LayerTrace, SimResult
    from ..fixed.neuron import wrap_current
    from ..nn import quantization
    from ..nn.neurons import QuantAwareSynaptic, QuantNeuronMixin
    from ..spec import LOIHI

    neurons = [(p, m) for p, m in net.named_modules() if isinstance(m, QuantNeuronMixin)]
    rec: dict[str, dict[str, list[torch.Tensor]]] = {p: {"s": [], "u": [], "v": [], "a": [],
                                                         "r": []} for p, _ in neurons}
    order: list[str] = []
    hooks = []
    for path, m in neurons:
        def hook(mod: nn.Module, inp: tuple, out: Any, path: str = path) -> None:
            if path not in order:
                order.append(path)
            spk = out[0] if isinstance(out, tuple) else out
            k = 2.0 ** mod.scale_exp
            r = rec[path]
            r["s"].append(spk.detach().to(torch.int64))
            r["v"].append((mod.mem.detach().double() * k).to(torch.int64))
            if isinstance(mod, QuantAwareSynaptic):
                r["u"].append((mod.syn.detach().double() * k).to(torch.int64))
            else:
                r["a"].append(inp[0].detach().double().to(torch.int64))

        hooks.append(m.register_forward_hook(hook))
        recurrent = getattr(m, "recurrent", None)
        if isinstance(recurrent, nn.Module):
            def rhook(mod: nn.Module, inp: tuple, out: Any, path: str = path) -> None:
                rec[path]["r"].append(out.detach().double().to(torch.int64))

            hooks.append(recurrent.register_forward_hook(rhook))
    try:
        with torch.no_grad(), quantization(net, True):
            utils.reset(net)
            zero = torch.zeros_like(x[0])
            for t in range(steps):
                net(x[t] if t < x.shape[0] else zero)
            utils.reset(net)
    finally:
        for h in hooks:
            h.remove()
    layers = {}
    for path in order:
        r = rec[path]
        s, v = torch.stack(r["s"]), torch.stack(r["v"])
        if r["u"]:
            u = torch.stack(r["u"])
        else:  # du = 4095: u = wrap24((a_in delayed by one step + recurrent) << 6)
            a = torch.stack(r["a"])
            a = torch.cat([torch.zeros_like(a[:1]), a[:-1]])
            if r["r"]:
                a = a + torch.stack(r["r"]).reshape(a.shape)
            u = wrap_current(wrap_current(a * (1 << LOIHI.act_shift)))
        layers[path] = LayerTrace(s.reshape(v.shape), u.reshape(v.shape), v)
    return SimResult(layers)


def _hardware(ir: LoihiNetwork, x: torch.Tensor, steps: int, backend: str, progress: bool,
              fixed_point: bool = True, record: tuple[str, ...] = ("s", "u", "v")) -> SimResult:
    chunk = max(1, min(16, int(x.shape[1])))
    if backend == "lava":
        from ..lava.runner import LavaNetwork

        with LavaNetwork(ir, fixed_point=fixed_point, record=record, steps=steps, chunk=chunk,
                         progress=progress) as ln:
            return ln.run(x)
    from ..lava.netx import NetxNetwork, save_netx

    with tempfile.TemporaryDirectory(prefix="snntorch_loihi_netx_") as tmp:
        path = Path(tmp) / "net.h5"
        save_netx(ir, path)
        with NetxNetwork(path, steps=steps, record=record, chunk=chunk,
                         progress=progress) as nn_:
            return nn_.run(x)


def verify(
    net: nn.Module | LoihiNetwork | Any,
    inputs: torch.Tensor | np.ndarray,
    *,
    backend: Literal["lava", "netx"] = "lava",
    float_drift: bool = True,
    progress: bool = False,
) -> ParityReport:
    """Run ``inputs`` through ``net`` and through Lava's bit-accurate simulation; compare.

    Args:
        net: a quantization-aware torch network (layers of :mod:`snntorch_loihi.nn`; a float
            snnTorch network is quantized first with :func:`~snntorch_loihi.qat.prepare_qat`,
            with a QuantizationWarning), a :class:`LoihiNetwork`, or a NIR graph / file.
        inputs: ``(T, B, *in)`` or ``(T, *in)``, time first, integer-valued (binary spikes, or
            graded payloads where the first synapse has ``num_message_bits > 0``). A torch
            network is called once per time step, ``net(inputs[t])`` (hidden states inside its
            neurons, ``init_hidden`` True or False); a forward that loops over time itself is
            not supported here.
        backend: ``"lava"`` (Lava processes built from the network) or ``"netx"`` (written as
            lava-dl netx HDF5 and loaded by netx; raises
            :class:`~snntorch_loihi.lava.netx.NetxError` where netx cannot represent the net).
        float_drift: also run Lava's float models on the float parameters and count how many
            spikes differ from fixed point (costs a second Lava run).
        progress: tqdm bars over the samples.

    Returns:
        A :class:`ParityReport`; ``report.exact`` is True only if spikes, ``u`` and ``v`` of every
        layer are identical at every step; ``print(report)`` shows the table,
        ``report.plot(path)`` saves rasters and membrane traces.

    Example:
        >>> report = verify(qnet, spikes)        # doctest: +SKIP
        >>> print(report); assert report.exact   # doctest: +SKIP
    """
    from ..callbacks.overflow import count_overflows
    from ..fixed.network import LayerTrace, SimResult, simulate

    if backend not in ("lava", "netx"):
        raise ValueError(f"verify: backend must be 'lava' or 'netx', got {backend!r}.")
    timings: dict[str, float] = {}
    x = torch.as_tensor(inputs)
    if isinstance(net, nn.Module):
        from ..export import export, from_nir_graph
        from ..export.api import needs_quantization

        if needs_quantization(net):
            from ..errors import QuantizationWarning
            from ..qat import prepare_qat

            warnings.warn("verify: net holds float layers; quantizing a copy post-training with "
                          "prepare_qat (verify a prepare_qat'd network to check your own).",
                          QuantizationWarning, stacklevel=2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = prepare_qat(net, example_input=x[0])
        # the torch side runs where the network lives (CPU or GPU); Lava and the comparison on CPU
        dev = next((p.device for p in net.parameters()), torch.device("cpu"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = export(net, x[0].to(dev, torch.get_default_dtype()))  # does not modify net
        ir = from_nir_graph(graph)
        xb, _ = _time_first(x, tuple(ir.input_shape))
        steps = int(xb.shape[0]) + ir.delay
        t0 = time.perf_counter()
        ref = record_torch(net, xb.to(dev, torch.get_default_dtype()), steps)
        ref = SimResult({k: LayerTrace(*(None if t is None else t.cpu() for t in (tr.s, tr.u, tr.v)))
                         for k, tr in ref.layers.items()})
        xb = xb.cpu()
        timings["reference"] = time.perf_counter() - t0
        if len(ref) != len(ir.layers):
            raise RegisterRangeError(
                f"verify: the torch forward called {len(ref)} neuron modules but the export has "
                f"{len(ir.layers)} layers; verify needs a chain network.")
        reference = "torch"
        compared = ("compared: torch quantized forward (hooks: spikes, v = mem * 2**k, u) vs "
                    f"{backend} fixed_pt: s, u, v of every layer at every step.")
    else:
        from ..lava.convert import as_network

        ir = as_network(net)
        xb, _ = _time_first(x, tuple(ir.input_shape))
        steps = int(xb.shape[0]) + ir.delay
        t0 = time.perf_counter()
        ref = simulate(ir, xb)
        timings["reference"] = time.perf_counter() - t0
        reference = "simulate"
        compared = (f"compared: fixed.simulate vs {backend} fixed_pt: s, u, v of every layer at "
                    f"every step.")
    xi = xb.to(torch.int64)
    if not torch.equal(xi.to(xb.dtype), xb):
        raise RegisterRangeError("verify: inputs must be integer-valued (spikes or graded "
                                 "payloads), got fractional values.")
    t0 = time.perf_counter()
    hw = _hardware(ir, xi, steps, backend, progress)
    timings["hardware"] = time.perf_counter() - t0
    hw_float = None
    if float_drift:
        t0 = time.perf_counter()
        hw_float = _hardware(ir, xi, steps, "lava", progress, fixed_point=False, record=("s",))
        timings["float"] = time.perf_counter() - t0
    over = count_overflows(ir, xi, steps=steps)
    layers = []
    for k, layer in enumerate(ir.layers):
        rtrace = ref[k]
        o = over[layer.name]
        fs = None if hw_float is None else (hw_float[k].s != 0).to(torch.int64)
        layers.append(compare_layer(layer.name, rtrace, hw[k], wraps=o.current_wraps,
                                    sats=o.voltage_saturations, float_s=fs))
    if reference == "torch":  # name the torch side's layers like the exported network
        from ..fixed.network import SimResult

        ref = SimResult({layer.name: ref[k] for k, layer in enumerate(ir.layers)})
    return ParityReport(reference=reference, backend=backend, steps=steps,
                        batch=int(xb.shape[1]), delay=ir.delay, layers=layers, ref=ref, hw=hw,
                        net=ir, hw_float=hw_float, compared=compared, timings=timings)
