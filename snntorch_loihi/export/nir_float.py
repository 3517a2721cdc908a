"""A NIR graph without Loihi registers (written by another tool) -> quantized LoihiNetwork.

The float nodes become snnTorch layers with the correspondence of
:mod:`snntorch_loihi.export.nir_io` (forward Euler with step ``dt``), then
:func:`snntorch_loihi.qat.prepare_qat` quantizes them with the package's calibration and
:func:`~snntorch_loihi.export.extract` reads the registers:

- ``LIF(tau, r, v_leak, v_threshold)`` -> ``Leaky(beta = 1 - dt/tau, threshold = v_threshold)``;
  the input scale ``r * dt / tau`` multiplies the weights (and bias) of the synapse before it,
  ``v_leak * dt / tau`` is a bias on ``v`` (put on that synapse's bias, which prepare_qat moves
  into the neuron);
- ``CubaLIF`` -> ``Synaptic(alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem)``, input scale
  ``w_in * dt/tau_syn * r * dt/tau_mem``; ``IF`` -> ``Leaky(beta = 1)`` with input scale ``r``;
  ``LI`` / ``CubaLI`` -> a non-resetting readout (``reset_mechanism="none"``);
- ``Affine``/``Linear`` -> ``nn.Linear``, ``Conv2d`` -> ``nn.Conv2d``, ``SumPool2d`` -> a sum
  pool, ``AvgPool2d`` -> ``nn.AvgPool2d``, ``Flatten`` -> ``nn.Flatten``;
- a recurrent ``LIF`` (a ``neuron <-> Affine/Linear`` cycle or sub-graph) -> ``RLeaky``.

``v_reset`` must be 0 (Loihi resets to zero).
"""

from __future__ import annotations

import warnings
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from ..errors import QuantizationWarning, SemanticsChangeWarning, UnsupportedModuleError
from ..ir import LoihiNetwork

__all__ = ["quantize_float_graph", "float_module"]


def _t(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float32)


def _param(x: Any) -> float | torch.Tensor:
    """A scalar if all entries agree (snnTorch's usual form), else a per-neuron tensor."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size and np.all(a == a[0]):
        return float(a[0])
    return _t(x).reshape(-1) if np.asarray(x).ndim <= 1 else _t(x)


def _pair(x: Any) -> tuple[int, int]:
    a = np.asarray(x).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _pool_out(shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int]) -> tuple[int, ...]:
    return (shape[0], (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1)


def _scale_synapse(syn: nn.Module | None, scale: np.ndarray, key: str) -> None:
    """Multiply the output of the synapse before a neuron by a per-neuron scale."""
    if syn is None:
        raise UnsupportedModuleError(f"NIR node '{key}': a neuron must be fed by a synapse.")
    s = torch.as_tensor(np.asarray(scale, np.float64), dtype=torch.float32)
    with torch.no_grad():
        if isinstance(syn, nn.Linear):
            syn.weight.mul_(s.reshape(-1, 1))
        else:
            c = s.reshape(s.shape[0], -1)[:, 0] if s.dim() else s
            syn.weight.mul_(c.reshape(-1, 1, 1, 1))
        if syn.bias is not None:
            syn.bias.mul_(s.reshape(-1) if isinstance(syn, nn.Linear) else
                          (s.reshape(s.shape[0], -1)[:, 0] if s.dim() else s))


def _add_bias(syn: nn.Module, b: np.ndarray, key: str) -> nn.Module:
    """Add a per-neuron bias on ``v`` to the synapse's bias (prepare_qat moves it to the neuron)."""
    if not np.any(b):
        return syn
    if isinstance(syn, nn.Conv2d):
        if not np.all(b == b[:, :1, :1]):
            raise UnsupportedModuleError(
                f"NIR node '{key}': v_leak must be uniform over each channel after a Conv2d, got "
                f"a spatially varying v_leak.")
        b = b[:, 0, 0]
    with torch.no_grad():
        if syn.bias is None:
            syn.bias = nn.Parameter(torch.zeros(syn.weight.shape[0]))
        syn.bias.add_(_t(b).reshape(-1))
    return syn


def float_module(chain: list, input_shape: tuple[int, ...], dt: float) -> nn.Sequential:
    """The float snnTorch network a chain of NIR nodes describes (see the module docstring)."""
    import snntorch as snn

    from ..nn import QuantSumPool2d

    mods: list[tuple[str, nn.Module]] = []
    shape = tuple(input_shape)
    syn: nn.Module | None = None
    for key, node, _rec_key, rec in chain:
        name = key.replace(".", "_")
        if isinstance(node, nir.Flatten):
            mods.append((name, nn.Flatten(start_dim=-len(shape))))
            shape = (int(np.prod(shape)),)
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight, np.float64)
            syn = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
            with torch.no_grad():
                syn.weight.copy_(_t(w))
                if isinstance(node, nir.Affine):
                    syn.bias.copy_(_t(node.bias).reshape(-1))
            mods.append((name, syn))
            shape = (w.shape[0],)
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight, np.float64)
            pad = node.padding if isinstance(node.padding, str) else _pair(node.padding)
            syn = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                            stride=_pair(node.stride), padding=pad, dilation=_pair(node.dilation),
                            groups=int(node.groups), bias=True)
            with torch.no_grad():
                syn.weight.copy_(_t(w))
                syn.bias.copy_(_t(node.bias).reshape(-1))
            mods.append((name, syn))
            shape = tuple(syn(torch.zeros(shape)).shape)
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            if np.any(np.asarray(node.padding)):
                raise UnsupportedModuleError(
                    f"NIR node '{key}': pooling padding must be 0, got {node.padding}.")
            k, s = _pair(node.kernel_size), _pair(node.stride)
            pool = QuantSumPool2d(k, s) if isinstance(node, nir.SumPool2d) else nn.AvgPool2d(k, s)
            mods.append((name, pool))
            shape = _pool_out(shape, k, s)
        elif isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI)):
            mods.append((name, _neuron(node, rec, syn, key, shape, dt, snn)))
            syn = None
        else:
            raise UnsupportedModuleError(
                f"NIR node '{key}': type {type(node).__name__} has no Loihi counterpart; supported: "
                f"Affine, Linear, Conv2d, Flatten, SumPool2d, AvgPool2d, LIF, CubaLIF, IF, LI, "
                f"CubaLI, and a recurrent LIF sub-graph.")
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(mods))


def _neuron(node: nir.NIRNode, rec: nir.NIRNode | None, syn: nn.Module | None, key: str,
            shape: tuple[int, ...], dt: float, snn: Any) -> nn.Module:
    f64 = lambda x: np.broadcast_to(np.asarray(x, np.float64), shape)  # noqa: E731
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset) != 0):
        raise UnsupportedModuleError(
            f"NIR node '{key}': v_reset must be 0 (Loihi resets to zero), got {_param(v_reset)}.")
    readout = isinstance(node, (nir.LI, nir.CubaLI))
    common: dict[str, Any] = dict(init_hidden=True, reset_delay=False,
                                  reset_mechanism="none" if readout else "zero")
    if not readout:
        common["threshold"] = _param(f64(node.v_threshold))
    if isinstance(node, nir.IF):
        beta, scale, v_bias = 1.0, f64(node.r), np.zeros(shape)
    elif isinstance(node, (nir.LIF, nir.LI)):
        frac = dt / f64(node.tau)
        beta, scale, v_bias = 1 - frac, f64(node.r) * frac, f64(node.v_leak) * frac
    else:
        frac_syn, frac_mem = dt / f64(node.tau_syn), dt / f64(node.tau_mem)
        beta, v_bias = 1 - frac_mem, f64(node.v_leak) * frac_mem
        scale = f64(node.w_in) * frac_syn * f64(node.r) * frac_mem
        if syn is not None and getattr(syn, "bias", None) is not None and bool(syn.bias.any()):
            warnings.warn(
                f"NIR node '{key}': the Affine bias feeding a CubaLIF drives its synaptic current; "
                f"Loihi adds biases to v, so it becomes a bias on v.", SemanticsChangeWarning,
                stacklevel=4)
    _scale_synapse(syn, scale, key)
    _add_bias(syn, v_bias, key)  # type: ignore[arg-type]
    if rec is not None:
        if not isinstance(node, (nir.LIF, nir.IF)):
            raise UnsupportedModuleError(
                f"NIR node '{key}': a recurrent {type(node).__name__} is not supported; only a "
                f"recurrent LIF (snnTorch RLeaky).")
        n = int(np.prod(shape))
        m = snn.RLeaky(beta=_param(beta), linear_features=n, all_to_all=True, **common)
        w = np.asarray(rec.weight, np.float64) * np.asarray(scale).reshape(-1, 1)
        with torch.no_grad():
            m.recurrent.weight.copy_(_t(w))
            if isinstance(rec, nir.Affine) and np.any(rec.bias):
                m.recurrent.bias.copy_(_t(np.asarray(rec.bias) * np.asarray(scale).reshape(-1)))
            else:
                m.recurrent.bias = None
        return m
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        return snn.Synaptic(alpha=_param(1 - dt / f64(node.tau_syn)), beta=_param(beta), **common)
    return snn.Leaky(beta=_param(beta), **common)


def quantize_float_graph(graph: nir.NIRGraph, chain: list, *, dt: float) -> LoihiNetwork:
    """Quantize a float NIR graph (no ``metadata["loihi"]``) with the package's calibration."""
    from ..qat import prepare_qat
    from .extract import extract

    input_key = next(k for k, n in graph.nodes.items() if isinstance(n, nir.Input))
    input_shape = tuple(int(n) for n in np.asarray(graph.nodes[input_key].input_type["input"]))
    net = float_module(chain, input_shape, dt)
    warnings.warn(
        f"NIR graph without metadata['loihi'] (written by another tool): its float parameters "
        f"were quantized for Loihi with dt = {dt:g} s per step; spikes can differ from the float "
        f"model. Export with snntorch_loihi.export to keep exact registers.",
        QuantizationWarning, stacklevel=3)
    qnet = prepare_qat(net)
    return extract(qnet, torch.zeros(input_shape))
