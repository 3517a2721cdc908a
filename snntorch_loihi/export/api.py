"""The user-facing pair: :func:`export` (torch network -> NIR) and :func:`from_nir` (NIR -> torch).

``from_nir(export(net, sample))`` is a quantization-aware ``nn.Sequential`` whose spikes equal
``net``'s in quantized mode, bit for bit: both run the same registers with the same arithmetic.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from os import PathLike
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from ..errors import QuantizationWarning, RegisterRangeError
from ..ir import LoihiNetwork
from ..spec import LOIHI
from .extract import extract_with_paths
from .nir_io import DT, from_nir_graph, to_nir

__all__ = ["export", "from_nir", "to_module", "needs_quantization"]


def needs_quantization(net: nn.Module) -> bool:
    """True if ``net`` holds float snnTorch / torch layers that :func:`prepare_qat` must swap."""
    import snntorch as snn

    from ..nn import is_quant_module

    for m in net.modules():
        if is_quant_module(m):
            continue
        if isinstance(m, (snn.SpikingNeuron, nn.Linear, nn.Conv2d, nn.AvgPool2d)):
            return True
    return False


def _values(x: Any) -> torch.Tensor:
    return torch.as_tensor(x.detach() if torch.is_tensor(x) else x, dtype=torch.float64).reshape(-1)


def _show(t: torch.Tensor) -> str:
    return f"{t.item():.6g}" if t.numel() == 1 else f"[{t.min().item():.6g}, {t.max().item():.6g}]"


def check_float_net(net: nn.Module) -> None:
    """Errors a float network cannot be quantized past, naming the layer.

    Raises:
        RegisterRangeError: beta or alpha outside ``[0, 1]`` (snnTorch clamps silently; Loihi's
            decay registers cannot express it), a threshold ``<= 0``, a non-finite weight or bias.
    """
    import snntorch as snn

    for path, m in net.named_modules():
        name = f"{type(m).__name__} '{path}'"
        if isinstance(m, snn.SpikingNeuron):
            for attr in ("beta", "alpha"):
                if not hasattr(m, attr) or getattr(m, attr) is None:
                    continue
                t = _values(getattr(m, attr))
                if not bool(torch.isfinite(t).all()) or bool((t > 1).any()) or bool((t < 0).any()):
                    raise RegisterRangeError(
                        f"{name}: {attr} must be in [0, 1], got {_show(t)}. Loihi's decay "
                        f"(d = 4096 * (1 - {attr})) is a 12-bit unsigned register.")
            t = _values(m.threshold)
            if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
                raise RegisterRangeError(
                    f"{name}: threshold must be > 0, got {_show(t)}. Loihi spikes when "
                    f"v > vth << 6 with an unsigned vth.")
        for pname, p in m.named_parameters(recurse=False):
            if not bool(torch.isfinite(p.detach()).all()):
                raise RegisterRangeError(
                    f"{name}: {pname} must be finite, got NaN or inf. Check the training run.")


def _float_threshold(m: nn.Module) -> torch.Tensor | None:
    return _values(m.threshold) if hasattr(m, "threshold") else None


def _summary(orig: nn.Module, qnet: nn.Module, ir: LoihiNetwork, syn_paths: dict[str, str]
             ) -> list[str]:
    """One line per layer: what quantization changed. Raises for a clamped threshold."""
    lines = []
    for layer in ir.layers:
        n, k = layer.neuron, layer.neuron.scale_exp
        try:
            om = orig.get_submodule(layer.name)
        except AttributeError:
            om = None
        parts = []
        kind = type(om).__name__ if om is not None else "neuron"
        if om is not None and hasattr(om, "beta"):
            parts.append(f"beta {_show(_values(om.beta))} -> {1 - n.dv / LOIHI.decay_unity:.6g} "
                         f"(dv={n.dv})")
        if om is not None and hasattr(om, "alpha"):
            parts.append(f"alpha {_show(_values(om.alpha))} -> "
                         f"{1 - (n.du + LOIHI.du_offset) / LOIHI.decay_unity:.6g} (du={n.du})")
        thr_q = float(n.vth << LOIHI.vth_shift) * 2.0**-k
        thr = _float_threshold(om) if om is not None else None
        if thr is not None and n.reset != "none":
            top = (LOIHI.vth_max + 0.5) * 2.0 ** (LOIHI.vth_shift - k)
            if float(thr.max()) > top:
                raise RegisterRangeError(
                    f"{kind} '{layer.name}': threshold must fit the 17-bit threshold mantissa "
                    f"(vth <= {LOIHI.vth_max}) at the scale 2**-{k} the weights need, got "
                    f"{_show(thr)} (largest {LOIHI.vth_max * 2.0 ** (LOIHI.vth_shift - k):.6g}). "
                    f"Lower the threshold, or train with smaller weights relative to it.")
            parts.append(f"threshold {_show(thr)} -> {thr_q:.6g} (vth={n.vth}, scale 2**-{k})")
        sp = syn_paths.get(layer.name)
        if sp is not None:
            qs = qnet.get_submodule(sp)
            regs = qs.registers()
            wq = regs["weight_mant"].double() * 2.0 ** (regs["weight_exp"] + LOIHI.act_shift - k)
            w = qs.weight.detach().double()
            err = (wq - w).abs().max().item() if w.numel() else 0.0
            top = w.abs().max().item() if w.numel() else 0.0
            rel = f" ({100 * err / top:.2g}% of max |w|)" if top > 0 else ""
            if top > 0 and not bool(regs["weight_mant"].any()):
                raise RegisterRangeError(
                    f"{kind} '{layer.name}': threshold must fit the 17-bit threshold mantissa at a "
                    f"scale where the weights survive, got threshold "
                    f"{_show(thr) if thr is not None else '?'}: at scale 2**-{k} (vth={n.vth}) "
                    f"every weight of '{sp}' (max |w| {top:.3g}) quantizes to 0. Lower the "
                    f"threshold or scale the weights up.")
            parts.append(f"weights '{sp}' max |err| {err:.3g}{rel}")
        if om is not None and getattr(om, "reset_mechanism", "zero") == "subtract":
            parts.append("reset subtract -> zero")
        if om is not None and getattr(om, "reset_delay", False):
            parts.append("reset_delay True -> False")
        lines.append(f"  {kind} '{layer.name}': " + "; ".join(parts))
    return lines


def export(net: nn.Module, sample: torch.Tensor, *, path: str | PathLike | None = None,
           dt: float = DT) -> nir.NIRGraph:
    """Export a network to a NIR graph carrying Loihi's integer registers.

    A quantization-aware network (layers of :mod:`snntorch_loihi.nn`) is exported with exactly
    the registers its quantized forward uses. A plain float snnTorch network is first quantized
    post-training with :func:`snntorch_loihi.qat.prepare_qat` (the same calibration), and a
    :class:`QuantizationWarning` lists per layer what changed (beta, alpha, threshold, weight
    error, reset semantics).

    Args:
        net: the network (not modified).
        sample: ONE time step of input as ``net`` takes it, batched or not.
        path: if given, the graph is also written there with ``nir.write``.
        dt: seconds per time step of the float parameters (default 1e-4, snnTorch's).

    Returns:
        The NIR graph (see :mod:`snntorch_loihi.export.nir_io` for the float correspondence).

    Raises:
        RegisterRangeError: a parameter that cannot be put on Loihi (beta > 1, threshold <= 0,
            NaN weights, a threshold too large for 17 bits), naming the layer.
        UnsupportedModuleError: a module with no Loihi counterpart, naming its path and type.

    Example:
        >>> import snntorch as snn, torch, warnings
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(0.9, init_hidden=True))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     graph = export(net, torch.zeros(1, 4))
        >>> sorted(graph.nodes)
        ['1.neuron', '1.synapse', 'input', 'output']
        >>> graph.nodes["1.neuron"].metadata["loihi"]["dv"]
        410
    """
    if needs_quantization(net):
        from ..qat import prepare_qat

        check_float_net(net)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            qnet = prepare_qat(net, example_input=sample)
        ir, syn_paths = extract_with_paths(qnet, sample)
        lines = _summary(net, qnet, ir, syn_paths)
        for w in caught:  # prepare_qat's own warnings, with their categories, from here
            warnings.warn(w.message, w.category, stacklevel=2)
        warnings.warn("export: quantized a float network post-training for Loihi (prepare_qat); "
                      "per layer:\n" + "\n".join(lines), QuantizationWarning, stacklevel=2)
    else:
        ir, _ = extract_with_paths(net, sample)
    graph = to_nir(ir, dt=dt)
    if path is not None:
        nir.write(path, graph)
    return graph


def _safe(name: str) -> str:
    return name.replace(".", "_")


def to_module(ir: LoihiNetwork) -> nn.Sequential:
    """A quantization-aware ``nn.Sequential`` (``init_hidden=True``, quantized mode) running ``ir``.

    Each call is one time step and returns the last layer's spikes. Dense synapses reading a
    multi-dimensional population get an ``nn.Flatten`` (batched or unbatched input both work).
    """
    from .. import nn as qnn

    mods: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in ir.layers:
        syn, n, name = layer.synapse, layer.neuron, _safe(layer.name)
        k = int(n.scale_exp)
        w = torch.as_tensor(np.asarray(syn.weight_mant, np.int64))
        if syn.kind == "dense":
            if len(syn.in_shape) > 1:
                mods[f"{name}_flatten"] = nn.Flatten(start_dim=-len(syn.in_shape))
            s = qnn.QuantLinear(int(w.shape[1]), int(w.shape[0]), bias=False,
                                num_weight_bits=syn.num_weight_bits,
                                num_message_bits=syn.num_message_bits)
        else:
            s = qnn.QuantConv2d(int(syn.in_shape[0]), int(w.shape[0]), tuple(w.shape[2:]),
                                stride=tuple(syn.stride), padding=tuple(syn.padding),
                                dilation=tuple(syn.dilation), groups=int(syn.groups), bias=False,
                                num_weight_bits=syn.num_weight_bits,
                                num_message_bits=syn.num_message_bits)
        s.path = f"{name}_synapse"
        s.load_registers(w, syn.weight_exp, syn.num_weight_bits, syn.sign_mode, scale_exp=k)
        mods[f"{name}_synapse"] = s
        common: dict[str, Any] = dict(init_hidden=True, reset_mechanism=n.reset)
        if layer.recurrent is not None:
            neuron = qnn.QuantAwareRLeaky(0.5, linear_features=int(np.prod(n.shape)),
                                          all_to_all=True, **common)
            rec = layer.recurrent
            neuron.recurrent.bias = None
            neuron.recurrent.path = f"{name}.recurrent"
            neuron.recurrent.load_registers(
                torch.as_tensor(np.asarray(rec.weight_mant, np.int64)), rec.weight_exp,
                rec.num_weight_bits, rec.sign_mode, scale_exp=k)
        elif n.du == LOIHI.decay_max:
            neuron = qnn.QuantAwareLeaky(0.5, **common)
        else:
            neuron = qnn.QuantAwareSynaptic(0.5, 0.5, **common)
        neuron.path = name
        bm = np.asarray(n.bias_mant, np.int64)
        be = np.asarray(n.bias_exp, np.int64)
        has_bias = bool(bm.any() or be.any())
        neuron.load_registers(
            int(n.du), int(n.dv), int(n.vth),
            bias_mant=torch.as_tensor(np.broadcast_to(bm, n.shape).copy()) if has_bias else None,
            bias_exp=torch.as_tensor(np.broadcast_to(be, n.shape).copy()) if has_bias else None,
            scale_exp=k)
        mods[name] = neuron
    net = nn.Sequential(mods)
    net.apply(qnn.enable_quantization)
    return net


def from_nir(graph_or_path: nir.NIRGraph | LoihiNetwork | str | PathLike, *,
             dt: float | None = None) -> nn.Sequential:
    """A quantization-aware torch network from a NIR graph, a NIR file, or a LoihiNetwork.

    Graphs with ``metadata["loihi"]`` give exactly their registers; other graphs are quantized
    (see :func:`~snntorch_loihi.export.nir_io.from_nir_graph`).

    Returns:
        ``nn.Sequential`` of :mod:`snntorch_loihi.nn` layers with ``init_hidden=True`` in
        quantized mode: one call per time step, returns the output spikes; reset its state with
        ``snntorch.utils.reset``. Layer ``k`` answers input step ``t`` at step ``t + k`` (Lava's
        synaptic delays): run ``T + len(ir.layers)`` steps.
    """
    if isinstance(graph_or_path, LoihiNetwork):
        ir = graph_or_path
    else:
        graph = graph_or_path
        if not isinstance(graph, nir.NIRNode):
            graph = nir.read(graph)
        ir = from_nir_graph(graph, dt=dt)
    return to_module(ir)

