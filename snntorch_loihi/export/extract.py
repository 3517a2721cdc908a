"""A quantization-aware torch network -> :class:`~snntorch_loihi.ir.LoihiNetwork`.

:func:`extract` runs ONE forward of a copy of the network on a sample (one time step, batched or
not) with hooks on its modules, and reads the modules in the order the forward called them (the
first time step's order, for forwards that loop over time). It accepts a chain::

    [Flatten | QuantSumPool2d]*  QuantLinear | QuantConv2d  QuantAware{Leaky,Synaptic,RLeaky}  ...

with ``nn.Identity`` and ``nn.Dropout`` anywhere (skipped: identities at inference). Flatten and
sum pooling before a synapse are folded into it (they are linear maps of spikes, so the folded
synapse computes exactly the same integer ``a_in``):

- Dense after pooling: ``W' = W P`` (``P`` the pooling matrix); each weight of a
  non-overlapping pool appears once per pooled window, so ``W'`` stays on Lava's weight grid.
- Conv after a pool with ``kernel == stride`` (no padding): a conv with kernel ``K * k`` and
  stride ``s * k`` whose weights repeat each weight over the pool window.

Every register comes from the layers' ``registers()`` (exactly what the quantized forward uses).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UnsupportedModuleError
from ..ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse

__all__ = ["extract", "extract_with_paths", "SUPPORTED"]

SUPPORTED = (
    "QuantLinear, QuantConv2d, QuantSumPool2d, QuantAwareLeaky, QuantAwareSynaptic, "
    "QuantAwareRLeaky, nn.Flatten, nn.Identity, nn.Dropout"
)


def _nn():  # lazy: the layers package imports snnTorch
    from .. import nn as qnn

    return qnn


def _kind(m: nn.Module) -> str | None:
    """The role of a module in the chain, or None if it is not supported."""
    qnn = _nn()
    if isinstance(m, (qnn.QuantAwareLeaky, qnn.QuantAwareSynaptic, qnn.QuantAwareRLeaky)):
        return "neuron"
    if isinstance(m, (qnn.QuantLinear, qnn.QuantConv2d)):
        return "synapse"
    if isinstance(m, qnn.QuantSumPool2d):
        return "pool"
    if isinstance(m, nn.Flatten):
        return "flatten"
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return "skip"
    return None


def _unsupported(path: str, m: nn.Module) -> UnsupportedModuleError:
    import snntorch as snn

    name = type(m).__name__
    hint = ""
    if isinstance(m, (snn.SpikingNeuron, nn.Linear, nn.Conv2d, nn.AvgPool2d)):
        hint = (" It is a float layer: use snntorch_loihi.export(net, sample), which quantizes "
                "with prepare_qat, or call snntorch_loihi.prepare_qat(net) first.")
    return UnsupportedModuleError(
        f"{name} '{path}': module type must be one of {SUPPORTED}, got {name}.{hint}")


def _units(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules the trace records: known types (not their children) and unknown leaves."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        kids = list(m.named_children())
        if _kind(m) is not None or not kids:
            out.append((prefix, m))
            return
        for name, child in kids:
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", net)
    return out


@dataclass
class _Call:
    path: str
    module: nn.Module
    kind: str | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_ptr: int
    out_ptr: int


def _first_tensor(x: Any) -> torch.Tensor | None:
    if torch.is_tensor(x):
        return x
    if isinstance(x, (tuple, list)) and x and torch.is_tensor(x[0]):
        return x[0]
    return None


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _trace(net: nn.Module, sample: torch.Tensor) -> tuple[list[_Call], int]:
    """One forward of a copy of ``net``; the first call of each module, in call order."""
    sample = torch.as_tensor(sample)
    sample_ptr = _ptr(sample)
    copy_net = copy.deepcopy(net)
    copy_net.eval()
    calls: list[_Call] = []
    seen: set[int] = set()
    stop = [False]
    handles = []

    def make_hook(path: str, m: nn.Module) -> Callable:
        def hook(mod: nn.Module, args: tuple, output: Any) -> None:
            if stop[0]:
                return
            if id(mod) in seen:
                x = _first_tensor(args)
                next_step = mod is calls[0].module and x is not None and _ptr(x) == sample_ptr
                if not next_step:
                    raise UnsupportedModuleError(
                        f"{type(mod).__name__} '{path}': a module must be called once per time "
                        f"step, got a second call in the same step (the first module "
                        f"'{calls[0].path}' had not run again on the input). Shared modules have "
                        f"no Loihi counterpart; use separate layers.")
                stop[0] = True  # the first module again: the next time step
                return
            seen.add(id(mod))
            x, y = _first_tensor(args), _first_tensor(output)
            if x is None or y is None:
                raise UnsupportedModuleError(
                    f"{type(mod).__name__} '{path}': input and output must be tensors (or tuples "
                    f"starting with one), got {type(args).__name__} -> {type(output).__name__}.")
            calls.append(_Call(path, mod, _kind(mod), tuple(x.shape), tuple(y.shape), _ptr(x),
                               _ptr(y)))

        return hook

    for path, m in _units(copy_net):
        if m is copy_net and _kind(m) is None:
            continue
        handles.append(m.register_forward_hook(make_hook(path, m)))
    try:
        with torch.no_grad():
            copy_net(sample)
    finally:
        for h in handles:
            h.remove()
    return calls, sample_ptr


def _batch_dims(c: _Call) -> int:
    m = c.module
    if c.kind == "synapse" and isinstance(m, nn.Linear):
        nb = len(c.in_shape) - 1
    elif c.kind in ("synapse", "pool"):
        nb = len(c.in_shape) - 3
    else:  # flatten
        nb = m.start_dim if m.start_dim >= 0 else len(c.in_shape) + m.start_dim
    if nb < 0:
        raise UnsupportedModuleError(
            f"{type(m).__name__} '{c.path}': input must have at least "
            f"{len(c.in_shape) - nb} dimensions, got shape {c.in_shape}.")
    return nb


# ---- folding pooling into the next synapse -----------------------------------------------------
@dataclass
class _Pool:
    path: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    in_shape: tuple[int, ...]   # (C, H, W)
    out_shape: tuple[int, ...]


def _pair(x: Any) -> tuple[int, int]:
    return (int(x), int(x)) if isinstance(x, int) else (int(x[0]), int(x[1]))


def _pool_adjoint(w: torch.Tensor, pool: _Pool) -> torch.Tensor:
    """``w @ P`` for rows ``w`` over the pooled shape: ``(n, C, H', W') -> (n, C, H, W)``."""
    c = pool.in_shape[0]
    ones = torch.ones(c, 1, *pool.kernel, dtype=torch.float64)
    return torch.nn.grad.conv2d_input((w.shape[0], *pool.in_shape), ones, w, stride=pool.stride,
                                      groups=c)


def _fold_dense(w: np.ndarray, pools: list[_Pool]) -> np.ndarray:
    if not pools:
        return w
    t = torch.as_tensor(w, dtype=torch.float64).reshape(w.shape[0], *pools[-1].out_shape)
    for pool in reversed(pools):
        t = _pool_adjoint(t, pool)
    return t.reshape(w.shape[0], -1).round().to(torch.int64).numpy()


def _fold_conv(w: np.ndarray, geom: dict[str, Any], pools: list[_Pool], where: str
               ) -> tuple[np.ndarray, dict[str, Any]]:
    for pool in reversed(pools):
        (kh, kw), (sh, sw) = pool.kernel, pool.stride
        h, wd = pool.in_shape[1:]
        exact = (kh, kw) == (sh, sw) and geom["dilation"] == (1, 1) and (
            geom["padding"] == (0, 0) or (h % kh == 0 and wd % kw == 0))
        if not exact:
            raise UnsupportedModuleError(
                f"QuantSumPool2d '{pool.path}': a pool before the conv synapse {where} folds into "
                f"it only with kernel_size == stride, and conv dilation 1 (and, with conv padding, "
                f"an input size divisible by the kernel), got kernel {pool.kernel}, stride "
                f"{pool.stride}, conv dilation {geom['dilation']}, input {pool.in_shape}.")
        w = np.repeat(np.repeat(w, kh, axis=2), kw, axis=3)
        geom = dict(geom, stride=(geom["stride"][0] * kh, geom["stride"][1] * kw),
                    padding=(geom["padding"][0] * kh, geom["padding"][1] * kw))
    return w, geom


# ---- building the layers -----------------------------------------------------------------------
@dataclass
class _Pending:
    call: _Call
    regs: dict[str, Any]
    in_shape: tuple[int, ...]
    pools: list[_Pool] = field(default_factory=list)
    first: bool = False


def _np(x: Any) -> np.ndarray:
    return (x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)).astype(np.int64)


def _synapse(p: _Pending, out_shape: tuple[int, ...]) -> LoihiSynapse:
    regs, m = p.regs, p.call.module
    w = _np(regs["weight_mant"])
    bits = int(regs.get("num_message_bits", 0))
    if p.pools and not p.first:
        bits = 0  # the folded synapse reads the binary spikes of the population before the pool
    common = dict(weight_exp=int(regs["weight_exp"]), num_weight_bits=int(regs["num_weight_bits"]),
                  sign_mode=str(regs["sign_mode"]), num_message_bits=bits)
    if isinstance(m, nn.Linear):
        return LoihiSynapse("dense", _fold_dense(w, p.pools), in_shape=p.in_shape,
                            out_shape=out_shape, **common)
    geom = dict(stride=_pair(m.stride), padding=_pair(m.padding), dilation=_pair(m.dilation))
    w, geom = _fold_conv(w, geom, p.pools, f"'{p.call.path}'")
    return LoihiSynapse("conv", w, in_shape=p.in_shape, out_shape=out_shape, groups=int(m.groups),
                        **geom, **common)


def _neuron(c: _Call, shape: tuple[int, ...]) -> tuple[LoihiNeuron, LoihiSynapse | None]:
    regs = c.module.registers()
    full = lambda x: np.broadcast_to(_np(x), shape).copy()  # noqa: E731
    neuron = LoihiNeuron(
        shape=shape, du=int(regs["du"]), dv=int(regs["dv"]), vth=int(regs["vth"]),
        bias_mant=full(regs["bias_mant"] if regs.get("bias_mant") is not None else 0),
        bias_exp=full(regs["bias_exp"] if regs.get("bias_exp") is not None else 0),
        scale_exp=int(regs["scale_exp"]), reset=str(regs.get("reset", "zero")),
    )
    rec = None
    if hasattr(c.module, "recurrent_registers"):
        r = c.module.recurrent_registers()
        rec = LoihiSynapse("dense", _np(r["weight_mant"]), in_shape=shape, out_shape=shape,
                           weight_exp=int(r["weight_exp"]), num_weight_bits=int(r["num_weight_bits"]),
                           sign_mode=str(r["sign_mode"]), num_message_bits=0)
    return neuron, rec


def _chain_error(a: _Call, b: _Call | None, what: str) -> UnsupportedModuleError:
    first = f"{type(a.module).__name__} '{a.path}'"
    second = f" and {type(b.module).__name__} '{b.path}'" if b is not None else ""
    return UnsupportedModuleError(f"{first}{second}: {what}")


def extract(net: nn.Module, sample: torch.Tensor) -> LoihiNetwork:
    """The Loihi network a quantization-aware torch network computes in quantized mode.

    Args:
        net: a network of :mod:`snntorch_loihi.nn` layers (``nn.Sequential`` or a custom module
            whose forward calls them in a chain; ``init_hidden`` True or False; a forward that
            loops over time is read at its first step). It is not modified: a copy runs.
        sample: ONE time step of input as the network takes it, batched or not (e.g.
            ``(B, 784)`` or ``(784,)``, ``(B, C, H, W)`` or ``(C, H, W)``).

    Returns:
        The validated :class:`LoihiNetwork`; layer names are the neuron modules' paths.

    Raises:
        UnsupportedModuleError: a module with no Loihi counterpart (naming its path, its type
            and the supported types), or a forward that is not a chain of modules.
        RegisterRangeError: a register outside the hardware range.
    """
    return extract_with_paths(net, sample)[0]


def extract_with_paths(net: nn.Module, sample: torch.Tensor
                       ) -> tuple[LoihiNetwork, dict[str, str]]:
    """:func:`extract`, plus ``{layer name: path of its synapse module}``."""
    calls, sample_ptr = _trace(net, sample)
    for c in calls:
        if c.kind is None:
            raise _unsupported(c.path, c.module)
    calls = [c for c in calls if c.kind != "skip"]
    if not calls:
        raise UnsupportedModuleError(
            f"{type(net).__name__}: the forward called no supported module; supported: {SUPPORTED}.")
    if calls[0].kind == "neuron":
        raise _chain_error(calls[0], None, "a neuron must be fed by a synapse (QuantLinear or "
                           "QuantConv2d); the network input goes straight into it.")
    if calls[0].in_ptr != sample_ptr:
        raise _chain_error(calls[0], None, "its input must be the sample itself (or a view of "
                           "it); the forward transforms the input before the first module, which "
                           "Loihi cannot do. Move that step into the data pipeline.")
    for a, b in zip(calls, calls[1:], strict=False):
        if b.in_ptr != a.out_ptr:
            raise _chain_error(a, b, "the forward computes something between these modules that "
                               "is not a module (a functional op, a branch or a merge); only a chain "
                               "of supported modules can run on Loihi.")
    nb = _batch_dims(calls[0])
    input_shape = calls[0].in_shape[nb:]
    shape = input_shape              # the current population's shape (network input at first)
    pools: list[_Pool] = []
    flattened = False
    pending: _Pending | None = None
    layers: list[LoihiLayer] = []
    syn_paths: dict[str, str] = {}
    for c in calls:
        if c.kind in ("pool", "flatten"):
            if pending is not None:
                raise _chain_error(pending.call, c, "pooling and flatten must come before a "
                                   "synapse, not between a synapse and its neuron.")
            if c.kind == "pool":
                if flattened:
                    raise _chain_error(c, None, "pooling after a flatten is not supported.")
                m = c.module
                pools.append(_Pool(c.path, _pair(m.kernel_size), _pair(m.stride),
                                   c.in_shape[nb:], c.out_shape[nb:]))
            else:
                flattened = True
            continue
        if c.kind == "synapse":
            if pending is not None:
                raise _chain_error(pending.call, c, "a synapse must feed a neuron; two synapses "
                                   "in a row have no Loihi counterpart.")
            if isinstance(c.module, nn.Conv2d) and flattened:
                raise _chain_error(c, None, "a conv synapse cannot read a flattened input.")
            pending = _Pending(c, c.module.registers(), shape, pools, first=not layers)
            pools, flattened = [], False
            continue
        if pending is None:
            raise _chain_error(c, None, "a neuron must be fed by a synapse (QuantLinear or "
                               "QuantConv2d), got another neuron or pooling before it.")
        out = c.out_shape[nb:]
        neuron, rec = _neuron(c, out)
        syn = _synapse(pending, out)
        if int(np.prod(pending.call.out_shape[nb:])) != int(np.prod(out)):
            raise _chain_error(pending.call, c, f"the synapse's output {pending.call.out_shape[nb:]} "
                               f"must match the neuron's shape {out}.")
        layers.append(LoihiLayer(c.path, syn, neuron, rec))
        syn_paths[c.path] = pending.call.path
        shape, pending = out, None
    if pending is not None:
        raise _chain_error(pending.call, None, "the last synapse feeds no neuron; end the "
                           "network with a QuantAware neuron.")
    if pools or flattened:
        raise UnsupportedModuleError(
            f"{type(net).__name__}: pooling or flatten after the last neuron has no Loihi "
            f"counterpart; remove it (apply it to the output spikes outside the network).")
    ir = LoihiNetwork(input_shape=tuple(int(n) for n in input_shape), layers=tuple(layers))
    ir.validate()
    return ir, syn_paths
