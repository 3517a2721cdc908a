"""Fused straight-through kernels for the quantized forward (fast path).

Each is one ``autograd.Function`` whose forward equals the composition of the fixed-point core's
functions exactly (``decay`` = ``rs0(x * f)``, ``wrap_current``, ``saturate_voltage``, the
quantizers of :mod:`snntorch_loihi.nn._quant`) and whose backward is the chain rule of their
straight-through twins (``decay_ste``, ``wrap_current_ste``, ``saturate_voltage_ste``,
``round_ste``, ``torch.clamp``). Fusing cuts the per-step op count several-fold; the tests check
both paths against each other. The integer work stays in the state's float dtype and is exact
in float32 (no float64 or int64 needed): the 24-bit x 12-bit decay product is split as
``v = vh * 4096 + vl`` (``vh = trunc(v / 4096)``), so that
``rs0(v * f) = vh * f + trunc(vl * f / 4096)`` with every partial product below ``2**24``.

The parameter quantizer keeps its clamp mask as a ``ctx`` attribute instead of a saved tensor,
so a quantized parameter can be computed once per optimizer step and reused by every time step
(and by a second backward pass).
"""

from __future__ import annotations

from typing import Any

import torch

from ..spec import LOIHI

__all__ = ["quant_ste", "leaky_subthreshold", "synaptic_subthreshold"]

_UNITY = LOIHI.decay_unity
_HALF = LOIHI.state_max
_MOD = LOIHI.state_modulus
_VMAX = LOIHI.v_max
_ACT = 1 << LOIHI.act_shift


def _sum_to(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if g.shape == shape:
        return g
    lead = g.dim() - len(shape)
    if lead > 0:
        g = g.sum(tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(dims, keepdim=True) if dims else g


class _QuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pre: Any, lo: float, hi: float,  # type: ignore[override]
                post: Any) -> torch.Tensor:
        r = torch.round(x * pre)
        ctx.mask = (r >= lo) & (r <= hi)
        ctx.gain = pre * post
        return torch.clamp(r, lo, hi) * post

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        return g * ctx.gain * ctx.mask, None, None, None, None


def quant_ste(x: torch.Tensor, pre: Any, lo: float, hi: float, post: Any = 1.0) -> torch.Tensor:
    """``clamp(round(x * pre), lo, hi) * post``; gradient ``pre * post`` inside the clamp, else 0.

    Example:
        >>> quant_ste(torch.tensor([0.3, 9.0]), 4.0, 0, 16, 2.0)
        tensor([ 2., 32.])
    """
    return _QuantSTE.apply(x, pre, lo, hi, post)


def _decay(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``rs0(v * f) = trunc(v * f / 4096)`` exactly, for integer ``|v| <= 2**24``, ``0 <= f <= 4096``.

    ``vh * f`` and ``vl * f / 4096`` have the sign of ``v`` (or are 0), so the truncation of
    their sum is ``vh * f + trunc(vl * f / 4096)``.
    """
    vh = torch.trunc(v * (1.0 / _UNITY))
    vl = torch.sub(v, vh, alpha=_UNITY)
    return torch.addcmul(torch.trunc(vl * (f * (1.0 / _UNITY))), vh, f)


def _wrap_input(a: torch.Tensor) -> torch.Tensor:
    """``wrap24(a << 6)`` into ``(-2**23, 2**23]`` (Lava's wrap); exact for ``|a| < 2**18``."""
    return _wrap(a * _ACT)


def _wrap(u: torch.Tensor) -> torch.Tensor:
    # the formula of fixed.wrap_current: exact in float32 for |u| <= 2**24 (an intermediate
    # ``_HALF - u`` would leave float32's exact range for large negative u)
    return u - _MOD * torch.ceil((u - _HALF) / _MOD)


class _LeakySub(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, mem: torch.Tensor, a: torch.Tensor, fv: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, scale: float, wrap: bool) -> torch.Tensor:
        dec = _decay(mem * scale, fv)
        v = dec + _wrap_input(a) if wrap else torch.add(dec, a, alpha=_ACT)
        if bias is not None:
            v = v + bias  # any rounding above 2**24 is saturated away just below
        ctx.save_for_backward(mem, fv)
        ctx.inv = 1.0 / scale
        ctx.bias_shape = None if bias is None else bias.shape
        return torch.clamp(v, -_VMAX, _VMAX) * ctx.inv

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        mem, fv = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (
            g * (fv * (1.0 / _UNITY)) if need[0] else None,
            g * (_ACT * ctx.inv) if need[1] else None,
            _sum_to(g * mem, fv.shape) * (1.0 / _UNITY) if need[2] else None,
            _sum_to(g, ctx.bias_shape) * ctx.inv if need[3] else None,
            None,
            None,
        )


def leaky_subthreshold(mem: torch.Tensor, a: torch.Tensor, fv: torch.Tensor,
                       bias: torch.Tensor | None, scale: float, wrap: bool = True
                       ) -> torch.Tensor:
    """``sat(rs0(v * fv) + wrap(a << 6) + bias) * 2**-k`` with ``v = mem * 2**k`` (float units).

    ``mem`` is the previous voltage in float units (``scale = 2**k``), ``a`` the integer input,
    ``fv`` the voltage decay multiplier ``4096 - dv``, ``bias`` the effective bias in units of
    ``v``. Returns the new voltage before the spike, in float units. ``wrap=False`` skips the
    24-bit wrap of ``a << 6`` (only valid when ``|a << 6| <= 2**23`` is guaranteed).

    Example:
        >>> leaky_subthreshold(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor(2048.),
        ...                    None, 256.0)
        tensor([1.])
    """
    return _LeakySub.apply(mem, a, fv, bias, scale, wrap)


class _SynapticSub(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, syn: torch.Tensor, mem: torch.Tensor, a: torch.Tensor,  # type: ignore[override]
                fu: torch.Tensor, fv: torch.Tensor, bias: torch.Tensor | None,
                scale: float, wrap: bool) -> tuple[torch.Tensor, torch.Tensor]:
        dec = _decay(syn * scale, fu)
        u = _wrap(dec + _wrap_input(a) if wrap else torch.add(dec, a, alpha=_ACT))
        v = _decay(mem * scale, fv) + u
        if bias is not None:
            v = v + bias
        ctx.save_for_backward(syn, mem, fu, fv)
        ctx.inv = 1.0 / scale
        ctx.bias_shape = None if bias is None else bias.shape
        return u * ctx.inv, torch.clamp(v, -_VMAX, _VMAX) * ctx.inv

    @staticmethod
    def backward(ctx: Any, g_syn: torch.Tensor, g_v: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        syn, mem, fu, fv = ctx.saved_tensors
        c = 1.0 / _UNITY
        gu = g_syn + g_v
        need = ctx.needs_input_grad
        return (
            gu * (fu * c) if need[0] else None,
            g_v * (fv * c) if need[1] else None,
            gu * (_ACT * ctx.inv) if need[2] else None,
            _sum_to(gu * syn, fu.shape) * c if need[3] else None,
            _sum_to(g_v * mem, fv.shape) * c if need[4] else None,
            _sum_to(g_v, ctx.bias_shape) * ctx.inv if need[5] else None,
            None,
            None,
        )


def synaptic_subthreshold(
    syn: torch.Tensor, mem: torch.Tensor, a: torch.Tensor, fu: torch.Tensor, fv: torch.Tensor,
    bias: torch.Tensor | None, scale: float, wrap: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CUBA step before the spike: returns ``(u, v)`` in float units (``state * 2**-k``).

    ``fu = 4096 - (du + 1)`` and ``fv = 4096 - dv`` are the decay multipliers.
    """
    return _SynapticSub.apply(syn, mem, a, fu, fv, bias, scale, wrap)
