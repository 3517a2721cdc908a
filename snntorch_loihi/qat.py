"""Turn a trained float snnTorch network into a quantization-aware one, and calibrate it.

:func:`prepare_qat` deep-copies a network and swaps ``nn.Linear`` / ``nn.Conv2d`` /
``nn.AvgPool2d`` and ``snn.Leaky`` / ``snn.Synaptic`` / ``snn.RLeaky`` for the layers of
:mod:`snntorch_loihi.nn`, keeping the trained weights.

**Pairing rule.** Each synapse feeds the next neuron in *forward order*; a pool must sit between
a neuron and the next synapse. Forward order is: the registration order for a tree of
``nn.Sequential`` containers; otherwise the call order of one forward of ``example_input``
(forward hooks) when it is given; otherwise the ``call_module`` order of a ``torch.fx`` trace
(snnTorch neurons as leaves). A module used several times counts at its first call.

**Calibration rule** (per neuron population, :func:`calibrate`). Choose the largest integer
``k = scale_exp`` such that (a) ``vth = round(threshold * 2**(k-6)) <= 65535`` (one bit of
headroom for ``v`` above the threshold within the 17-bit register), (b) each feeding synapse
keeps its weights on the grid with the least squared error: the offset ``weight_exp - k`` is
chosen once per synapse among the one that fits ``max|w|`` and three finer ones (clipping the
largest weights; this is what matters below ~4 bits), and ``weight_exp = k + offset`` must lie
in ``[-8, 7]`` (a Conv has ``weight_exp = 0``, so its offset bounds ``k``), (c) the worst-case
current ``|u| <= 64 * max_i sum_j |weight_mant_ij| * 2**weight_exp * x_max`` (divided by
``(du + 1) / 4096`` for a Synaptic current, recurrent spikes included, ``x_max`` = 1 for spikes,
``2**num_message_bits - 1`` for graded input, times the pool area after a sum pool) stays below
``2**23`` (no wrap) and every accumulator below ``2**24`` (exact in float32), (d) the bias
fits ``bias_mant << 7`` and (e) for ``reset="none"`` the worst-case ``|v|`` stays below
``2**23``. Each bias gets the smallest ``bias_exp`` >= 6 (lava-dl netx writes every
bias with exponent 6) that fits its 13-bit mantissa.

Calibration runs in :func:`prepare_qat` and on request (:func:`calibrate`); training does not
move it. :func:`freeze_calibration` and ``load_registers`` pin a layer's choice.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from typing import Any

import snntorch as snn
import torch
from torch import nn

from .errors import (
    QuantizationWarning,
    RegisterRangeError,
    SemanticsChangeWarning,
    UnsupportedModuleError,
)
from .fixed import determine_sign_mode, weight_grid
from .nn import (
    QuantAwareLeaky,
    QuantAwareRLeaky,
    QuantAwareSynaptic,
    QuantConv2d,
    QuantLinear,
    QuantSumPool2d,
    enable_quantization,
)
from .nn._quant import choose_bias_exp
from .nn.neurons import QuantNeuronMixin
from .nn.synapses import QuantOneToOne, QuantSynapseMixin
from .spec import LOIHI

__all__ = ["prepare_qat", "calibrate", "freeze_calibration", "delay_steps"]

_NEURONS = (snn.Leaky, snn.Synaptic, snn.RLeaky)
_SYNAPSES = (nn.Linear, nn.Conv2d)
_PASS = (nn.Flatten, nn.Identity)
_VTH_CAP = LOIHI.vth_max >> 1


def _is_leaf(m: nn.Module) -> bool:
    return isinstance(m, snn.SpikingNeuron) or len(m._modules) == 0


def _leaves(root: nn.Module) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []

    def walk(m: nn.Module, prefix: str) -> None:
        for name, child in m._modules.items():
            if child is None:
                continue
            path = f"{prefix}.{name}" if prefix else name
            if _is_leaf(child):
                out.append((path, child))
            else:
                walk(child, path)

    walk(root, "")
    return out


def _only_sequential(root: nn.Module) -> bool:
    return all(isinstance(m, nn.Sequential) or _is_leaf(m)
               for m in root.modules() if m is not root) and (
        isinstance(root, nn.Sequential) or _is_leaf(root))


def _forward_order(root: nn.Module, example_input: Any) -> list[tuple[str, nn.Module]]:
    leaves = _leaves(root)
    if _only_sequential(root):
        return leaves
    if example_input is not None:
        order: list[tuple[str, nn.Module]] = []
        seen: set[int] = set()
        hooks = []
        for path, m in leaves:
            def hook(mod: nn.Module, args: Any, path: str = path) -> None:
                if id(mod) not in seen:
                    seen.add(id(mod))
                    order.append((path, mod))
            hooks.append(m.register_forward_pre_hook(hook))
        try:
            with torch.no_grad():
                root(*example_input) if isinstance(example_input, tuple) else root(example_input)
        finally:
            for h in hooks:
                h.remove()
        snn.utils.reset(root)
        return order

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return _is_leaf(m) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(root)
    except Exception as exc:  # noqa: BLE001 - any tracing failure gets the same advice
        raise UnsupportedModuleError(
            f"prepare_qat: the forward of {type(root).__name__} could not be traced with "
            f"torch.fx ({type(exc).__name__}: {exc}). Pass example_input=<an input of one "
            f"forward call> so that the forward order is taken from that call instead."
        ) from exc
    named = dict(root.named_modules())
    order, seen_t = [], set()
    for node in graph.nodes:
        if node.op == "call_module" and node.target not in seen_t:
            seen_t.add(node.target)
            order.append((str(node.target), named[str(node.target)]))
    return order


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent = root
    *head, last = path.split(".")
    for name in head:
        parent = getattr(parent, name)
    setattr(parent, last, new)


def _warn(msg: str, cls: type[Warning] = SemanticsChangeWarning) -> None:
    warnings.warn(msg, cls, stacklevel=3)


def _learn(t: torch.Tensor) -> bool:
    return isinstance(t, nn.Parameter)


def _convert_neuron(path: str, m: nn.Module, bias: torch.Tensor | None) -> QuantNeuronMixin:
    name = f"{type(m).__name__} '{path}'"
    reset = m.reset_mechanism
    if reset == "subtract":
        _warn(f"{name}: reset_mechanism 'subtract' becomes 'zero' on Loihi (Loihi sets the "
              f"membrane to 0 in the step of the spike); fine-tune to recover accuracy.")
        reset = "zero"
    if getattr(m, "reset_delay", False) and reset != "none":
        _warn(f"{name}: reset_delay=True becomes False on Loihi (the reset happens in the step "
              f"of the spike, so the returned mem is 0 after a spike).")
    if float(m.graded_spikes_factor) != 1.0 or m.inhibition or m.state_quant:
        raise UnsupportedModuleError(
            f"{name}: graded_spikes_factor must be 1, inhibition and state_quant False on "
            f"Loihi, got {float(m.graded_spikes_factor)}, {m.inhibition}, {m.state_quant}.")
    common = dict(threshold=m.threshold.detach().clone(), spike_grad=m.spike_grad,
                  surrogate_disable=m.surrogate_disable, init_hidden=m.init_hidden,
                  learn_beta=_learn(m.beta), learn_threshold=_learn(m.threshold),
                  reset_mechanism=reset, output=m.output, bias=bias)
    beta = m.beta.detach().clone()
    q: QuantNeuronMixin
    if isinstance(m, snn.Synaptic):
        if bias is not None:
            _warn(f"{name}: the synapse bias moves from the synaptic current to the membrane "
                  f"(Loihi adds biases to v): mem gains b per step instead of b / (1 - alpha).")
        q = QuantAwareSynaptic(m.alpha.detach().clone(), beta, learn_alpha=_learn(m.alpha),
                               **common)
    elif isinstance(m, snn.RLeaky):
        if getattr(m, "conv2d_channels", None) or getattr(m, "kernel_size", None):
            raise UnsupportedModuleError(
                f"{name}: convolutional recurrence must be replaced by a Dense one on Loihi, "
                f"got conv2d_channels={m.conv2d_channels}, kernel_size={m.kernel_size}.")
        rec = m.recurrent
        learn_rec = any(p.requires_grad for p in rec.parameters()) if m.all_to_all else _learn(m.V)
        V = m.V.detach().clone() if not m.all_to_all else 1.0
        q = QuantAwareRLeaky(beta, V=V, all_to_all=m.all_to_all,
                             linear_features=m.linear_features if m.all_to_all else None,
                             learn_recurrent=learn_rec, **common)
        if m.all_to_all:
            with torch.no_grad():
                q.recurrent.weight.copy_(rec.weight)
                if rec.bias is not None:
                    b = rec.bias.detach().clone()
                    q.bias = nn.Parameter(b if q.bias is None else q.bias.detach() + b)
                    q.register_buffer("bias_exp", torch.zeros(b.shape, dtype=torch.int64))
            q.recurrent.bias = None
    else:
        q = QuantAwareLeaky(beta, **common)
    return q.to(m.beta.device)  # type: ignore[return-value]


def _walk(root: nn.Module, order: list[tuple[str, nn.Module]], weight_bits: int | Mapping[str, int],
          num_message_bits: int, convert: bool) -> list[QuantNeuronMixin]:
    """Pair synapses with neurons in ``order``; replace float modules when ``convert``."""
    neurons: list[QuantNeuronMixin] = []
    pending: tuple[str, Any] | None = None
    pool_area, first = 1, True

    def bits(path: str) -> int:
        if isinstance(weight_bits, Mapping):
            return int(weight_bits.get(path, 8))
        return int(weight_bits)

    for path, m in order:
        kind = type(m).__name__
        if isinstance(m, (QuantSynapseMixin, *_SYNAPSES)) and not isinstance(m, QuantOneToOne):
            if pending is not None:
                raise UnsupportedModuleError(
                    f"{kind} '{path}': a synapse must feed a spiking neuron, got it after "
                    f"synapse '{pending[0]}' with no neuron between. Loihi needs a neuron after "
                    f"each Linear/Conv2d.")
            if convert and not isinstance(m, QuantSynapseMixin):
                cls = QuantLinear if isinstance(m, nn.Linear) else QuantConv2d
                q = cls.from_float(m)
                if pool_area != 1:
                    with torch.no_grad():
                        q.weight.mul_(1.0 / pool_area)
                _set_module(root, path, q)
                m = q
            m.path = path
            if convert:
                m.num_weight_bits = bits(path)
                m.num_message_bits = num_message_bits if first else 0
            m.check_input = first
            m._input_max = (2**m.num_message_bits - 1 if m.num_message_bits else 1) * pool_area
            pending, pool_area, first = (path, m), 1, False
        elif isinstance(m, (nn.AvgPool2d, QuantSumPool2d)):
            if pending is not None:
                raise UnsupportedModuleError(
                    f"{kind} '{path}': pooling must come after a neuron (Loihi pools spikes), "
                    f"got it between synapse '{pending[0]}' and its neuron.")
            if convert and isinstance(m, nn.AvgPool2d):
                q = QuantSumPool2d.from_float(m)
                _set_module(root, path, q)
                m = q
            pool_area *= m.area
        elif isinstance(m, QuantNeuronMixin) or (convert and isinstance(m, _NEURONS)):
            if pending is None:
                raise UnsupportedModuleError(
                    f"{kind} '{path}': a spiking neuron must be fed by a Linear/Conv2d synapse "
                    f"on Loihi, got none before it.")
            syn = pending[1]
            if not isinstance(m, QuantNeuronMixin):
                bias = None
                if syn.bias is not None:
                    bias = syn.bias.detach().clone()
                    if isinstance(syn, nn.Conv2d):
                        bias = bias.reshape(-1, 1, 1)
                    syn.bias = None
                m = _convert_neuron(path, m, bias)
                _set_module(root, path, m)
            if isinstance(m, QuantAwareRLeaky) and convert:
                m.recurrent.num_weight_bits = bits(path + ".recurrent")
                m.recurrent.path = path + ".recurrent"
            m.path = path
            m.feeders = [syn]
            neurons.append(m)
            pending = None
        elif isinstance(m, nn.Dropout):
            if convert:
                _warn(f"Dropout '{path}': replaced by Identity (Loihi has no dropout; in "
                      f"quantized mode it would make spikes non-binary).")
                _set_module(root, path, nn.Identity())
        elif isinstance(m, _PASS):
            continue
        else:
            raise UnsupportedModuleError(
                f"{kind} '{path}': module type must be one of Linear, Conv2d, AvgPool2d, "
                f"Flatten, Dropout, Leaky, Synaptic, RLeaky on Loihi, got {kind}. Remove it "
                f"or replace it (e.g. MaxPool2d -> AvgPool2d, fold BatchNorm into the weights).")
    if pending is not None:
        raise UnsupportedModuleError(
            f"{type(pending[1]).__name__} '{pending[0]}': a synapse must feed a spiking neuron, "
            f"got none after it. Add a Leaky (reset_mechanism='none' for a membrane readout).")
    return neurons


def _copy(net: nn.Module) -> nn.Module:
    """``deepcopy`` that detaches hidden states still attached to a graph (after a forward)."""
    memo: dict[int, Any] = {}
    for m in net.modules():
        for t in [*m._buffers.values(), *m.__dict__.values()]:
            if torch.is_tensor(t) and not t.is_leaf:
                memo[id(t)] = t.detach().clone()
    return copy.deepcopy(net, memo)


def prepare_qat(
    net: nn.Module, *, weight_bits: int | Mapping[str, int] = 8, quantize: bool = True,
    num_message_bits: int = 0, example_input: Any = None, netx_compatible: bool = True,
) -> nn.Module:
    """A calibrated quantization-aware deep copy of a trained float snnTorch network.

    Args:
        net: ``nn.Sequential`` or a custom module of Linear/Conv2d/AvgPool2d/Flatten/Dropout
            and snnTorch Leaky/Synaptic/RLeaky neurons (``init_hidden`` True or False).
        weight_bits: Lava's ``num_weight_bits`` (1..8), one int or ``{module path: int}``
            (default 8; the recurrent synapse of an RLeaky at ``'<path>.recurrent'``).
        quantize: return the copy in quantized mode (else float mode, calibrated).
        num_message_bits: graded input on the first synapse (0: binary spikes).
        example_input: an input of one ``net(example_input)`` call (a tuple for several
            arguments), used to find the forward order of a custom module.
        netx_compatible: calibrate so that lava-dl netx can hold the registers (default):
            every weight exponent 0 (netx stores integer weights in [-256, 254] and no
            exponent) and every bias exponent >= 6 (netx writes ``bias_exp = 6``). False uses
            Dense weight exponents and finer biases, for the finest registers that Lava's
            processes (:func:`~snntorch_loihi.to_lava`) run but netx cannot load.

    Returns:
        The converted copy (``net`` is not modified).

    Raises:
        UnsupportedModuleError: a module Loihi cannot run, named by path and type.

    Example:
        >>> import snntorch as snn
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(0.9, init_hidden=True,
        ...                     reset_mechanism="zero", reset_delay=False))
        >>> q = prepare_qat(net)
        >>> type(q[1]).__name__, q[1].bias.shape, q[0].bias, delay_steps(q)
        ('QuantAwareLeaky', torch.Size([3]), None, 1)
    """
    root = _copy(net)
    for m in root.modules():
        if isinstance(m, snn.SpikingNeuron) and m not in snn.SpikingNeuron.instances:
            snn.SpikingNeuron.instances.append(m)
    order = _forward_order(root, example_input)
    if len(order) == 1 and order[0][1] is root:
        raise UnsupportedModuleError(
            f"{type(root).__name__} '': prepare_qat needs a network with a synapse and a "
            f"neuron, got a single module.")
    _walk(root, order, weight_bits, num_message_bits, convert=True)
    for m in root.modules():
        if isinstance(m, QuantSynapseMixin):
            m.netx_compatible = bool(netx_compatible)
    calibrate(root, _order=order)
    if quantize:
        root.apply(enable_quantization)
    return root


def _mantissas(syn: QuantSynapseMixin, offset: int) -> torch.Tensor:
    """Mantissas of ``syn``'s float weights for ``weight_exp - scale_exp = offset``."""
    w = syn.weight.detach()
    lo, hi, step = weight_grid(syn.num_weight_bits, determine_sign_mode(w))
    return torch.clamp(torch.round(w * 2.0 ** (-6 - offset) / step) * step, lo, hi)


def _best_offset(syn: QuantSynapseMixin) -> int:
    """``weight_exp - scale_exp`` with the least squared weight error (clipping allowed).

    Starts from the offset that fits ``max|w|`` on the grid and tries up to 3 finer ones,
    which clip the largest weights but resolve the bulk (this matters below ~4 bits).
    """
    w = syn.weight.detach()
    lo, hi, _ = weight_grid(syn.num_weight_bits, determine_sign_mode(w))
    pos = float(w.clamp(min=0).max()) if w.numel() and hi > 0 else 0.0
    neg = float((-w).clamp(min=0).max()) if w.numel() and lo < 0 else 0.0
    if pos == 0.0 and neg == 0.0:
        return -6
    # smallest offset d that puts the largest weights of each sign on the grid
    d0 = max(math.ceil(math.log2(pos / hi)) if pos else -999,
             math.ceil(math.log2(neg / -lo)) if neg else -999) - 6
    while pos * 2.0 ** (-6 - d0) > hi or neg * 2.0 ** (-6 - d0) > -lo:
        d0 += 1
    errs = {d: float(((_mantissas(syn, d) * 2.0 ** (6 + d) - w) ** 2).sum())
            for d in range(d0, d0 - 4, -1)}
    return min(errs, key=lambda d: (errs[d], -d))


def _calibrate_neuron(n: QuantNeuronMixin) -> None:
    where = f"{type(n).__name__} '{n.path}'"
    syns: list[tuple[QuantSynapseMixin, float]] = [(s, float(getattr(s, "_input_max", 1)))
                                                   for s in n.feeders]
    if isinstance(n, QuantAwareRLeaky):
        syns.append((n.recurrent, 1.0))
    beta = n.beta.detach().clamp(0, 1)
    if bool((torch.round(LOIHI.decay_unity * beta) < 1).any()):
        _warn(f"{where}: beta = 0 needs dv = 4096, which Loihi cannot hold; clamped to dv = "
              f"4095 (beta = 1/4096).", QuantizationWarning)
    gain = 1.0
    if isinstance(n, QuantAwareSynaptic):
        du = LOIHI.decay_max - torch.round(LOIHI.decay_unity * n.alpha.detach().clamp(0, 1))
        if bool((du < 0).any()):
            raise RegisterRangeError(
                f"{where}: alpha must be at most 1 - 1/8192 on Loihi (du >= 0), got "
                f"{float(n.alpha.max())}. A current that never decays cannot be represented.")
        gain = LOIHI.decay_unity / (float(du.min()) + 1)
    thr = 0.0 if n.reset_mechanism == "none" else float(n.threshold.detach().max())
    bmax = float(n.bias.detach().abs().max()) if n.bias is not None else 0.0
    dv_min = float((LOIHI.decay_unity - torch.round(LOIHI.decay_unity * beta)).clamp(0, 4095).min())
    stats = []
    for s, x in syns:
        d = _best_offset(s)
        rows = _mantissas(s, d).abs()
        stats.append((s, x, d, float(rows.reshape(rows.shape[0], -1).sum(1).max())
                      if rows.dim() > 1 else float(rows.max())))
    for k in range(48, -33, -1):
        if round(thr * 2.0 ** (k - 6)) > _VTH_CAP:
            continue
        if bmax * 2.0**k > LOIHI.bias_mant_max * 2**LOIHI.bias_exp_max:
            continue
        exps, a_bound, ok = [], 0.0, True
        for s, xmax, d, rowsum in stats:
            zero_exp = isinstance(s, QuantConv2d) or getattr(s, "netx_compatible", True)
            e = 0 if zero_exp else max(k + d, LOIHI.weight_exp_min)
            if e > LOIHI.weight_exp_max or e - k < d:   # would clip beyond the chosen grid
                ok = False
                break
            exps.append(e)
            acc = rowsum * 2.0 ** (d - (e - k)) * xmax + 1   # mantissas shrink if e - k > d
            ok = ok and acc < LOIHI.float32_exact
            a_bound += acc * 2.0**e
        u_bound = a_bound * (1 << LOIHI.act_shift) * gain
        if not ok or u_bound >= LOIHI.state_max:
            continue
        if n.reset_mechanism == "none" and dv_min > 0:
            if (u_bound + bmax * 2.0**k) * LOIHI.decay_unity / dv_min >= LOIHI.v_max:
                continue
        break
    else:
        raise RegisterRangeError(
            f"{where}: no scale_exp fits the threshold ({thr}), weights and bias into Loihi's "
            f"registers. Rescale the layer (e.g. smaller weights or threshold).")
    n.scale_exp = k
    for (s, *_), e in zip(stats, exps, strict=True):
        s.scale_exp, s.weight_exp = k, e
        s.sign_mode = determine_sign_mode(s.weight.detach())
    if n.bias is not None:
        netx = all(getattr(s, "netx_compatible", True) for s in n.feeders)
        n._buffers["bias_exp"] = choose_bias_exp(
            n.bias, k, LOIHI.netx_bias_exp if netx else 0).to(n.bias.device)


def calibrate(net: nn.Module, *, _order: list[tuple[str, nn.Module]] | None = None) -> nn.Module:
    """Choose ``scale_exp``, ``weight_exp``, ``sign_mode`` and ``bias_exp`` of every layer.

    Layers whose calibration is frozen (:func:`freeze_calibration`, ``load_registers``) keep
    theirs. A hand-built network is paired in forward order first (see the module docstring).
    Returns ``net``.
    """
    neurons = [m for m in net.modules() if isinstance(m, QuantNeuronMixin)]
    if any(not n.feeders for n in neurons):
        _walk(net, _order or _forward_order(net, None), 8, 0, convert=False)
    for n in neurons:
        frozen = n.calibration_frozen or any(s.calibration_frozen for s in n.feeders)
        if not frozen:
            _calibrate_neuron(n)
    return net


def freeze_calibration(net: nn.Module) -> nn.Module:
    """Keep every layer's current ``scale_exp`` / exponents in later :func:`calibrate` calls."""
    for m in net.modules():
        if isinstance(m, (QuantNeuronMixin, QuantSynapseMixin)):
            m.calibration_frozen = True
    return net


def delay_steps(net: nn.Module) -> int:
    """Extra steps to flush a quantized network: one per feed-forward synapse layer.

    Lava delays every Dense/Conv by one step, so the last layer answers input step 0 at step
    ``delay_steps(net)``; run ``T + delay_steps(net)`` steps.
    """
    recurrent = {id(m.recurrent) for m in net.modules() if isinstance(m, QuantAwareRLeaky)}
    return sum(1 for m in net.modules()
               if isinstance(m, (QuantLinear, QuantConv2d)) and id(m) not in recurrent)

