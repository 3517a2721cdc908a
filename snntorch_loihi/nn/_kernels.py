"""Fused straight-through kernels for the quantized forward (fast path).

Each is one ``autograd.Function`` whose forward equals the composition of the fixed-point core's
functions exactly (``decay`` = ``rs0(x * f)``, ``wrap_current``, ``saturate_voltage``, the
quantizers of :mod:`snntorch_loihi.nn._quant`) and whose backward is the chain rule of their
straight-through twins (``decay_ste``, ``wrap_current_ste``, ``saturate_voltage_ste``,
``round_ste``, ``torch.clamp``). Fusing cuts the per-step op count several-fold; the tests check
both paths against each other. The integer work runs in int64 (exact on every device; no
float64 needed).

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


def _to_int(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.int64)


def _decay(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return torch.div(v * _to_int(f), _UNITY, rounding_mode="trunc")  # rs0: round toward zero


def _wrap(u: torch.Tensor) -> torch.Tensor:
    return _HALF - torch.remainder(_HALF - u, _MOD)  # into (-2**23, 2**23], Lava's wrap


class _LeakySub(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, mem: torch.Tensor, a: torch.Tensor, fv: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, scale: float) -> torch.Tensor:
        v = _decay(_to_int(mem * scale), fv) + _wrap(_to_int(a) * _ACT)
        if bias is not None:
            v = v + _to_int(bias)
        ctx.save_for_backward(mem, fv)
        ctx.scale = scale
        ctx.bias_shape = None if bias is None else bias.shape
        return torch.clamp(v, -_VMAX, _VMAX).to(mem.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        mem, fv = ctx.saved_tensors
        c = ctx.scale / _UNITY
        gmem = g * (fv * c) if ctx.needs_input_grad[0] else None
        ga = g * _ACT if ctx.needs_input_grad[1] else None
        gfv = _sum_to(g * mem * c, fv.shape) if ctx.needs_input_grad[2] else None
        gb = _sum_to(g, ctx.bias_shape) if ctx.needs_input_grad[3] else None
        return gmem, ga, gfv, gb, None


def leaky_subthreshold(mem: torch.Tensor, a: torch.Tensor, fv: torch.Tensor,
                       bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``v = sat(rs0(mem * scale * fv) + wrap(a << 6) + bias)`` (integer ``v``, float tensor).

    ``mem`` is the previous voltage in float units (``v * 2**-k``, ``scale = 2**k``), ``fv`` the
    voltage decay multiplier ``4096 - dv``, ``bias`` the effective bias in units of ``v``.

    Example:
        >>> leaky_subthreshold(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor(2048.),
        ...                    None, 256.0)
        tensor([256.])
    """
    return _LeakySub.apply(mem, a, fv, bias, scale)


class _SynapticSub(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, syn: torch.Tensor, mem: torch.Tensor, a: torch.Tensor,  # type: ignore[override]
                fu: torch.Tensor, fv: torch.Tensor, bias: torch.Tensor | None,
                scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        u = _wrap(_decay(_to_int(syn * scale), fu) + _wrap(_to_int(a) * _ACT))
        v = _decay(_to_int(mem * scale), fv) + u
        if bias is not None:
            v = v + _to_int(bias)
        ctx.save_for_backward(syn, mem, fu, fv)
        ctx.scale = scale
        ctx.bias_shape = None if bias is None else bias.shape
        return (u.to(syn.dtype) * (1.0 / scale),
                torch.clamp(v, -_VMAX, _VMAX).to(mem.dtype))

    @staticmethod
    def backward(ctx: Any, g_syn: torch.Tensor, g_v: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        syn, mem, fu, fv = ctx.saved_tensors
        c = ctx.scale / _UNITY
        gu = g_syn * (1.0 / ctx.scale) + g_v
        need = ctx.needs_input_grad
        return (
            gu * (fu * c) if need[0] else None,
            g_v * (fv * c) if need[1] else None,
            gu * _ACT if need[2] else None,
            _sum_to(gu * syn * c, fu.shape) if need[3] else None,
            _sum_to(g_v * mem * c, fv.shape) if need[4] else None,
            _sum_to(g_v, ctx.bias_shape) if need[5] else None,
            None,
        )


def synaptic_subthreshold(
    syn: torch.Tensor, mem: torch.Tensor, a: torch.Tensor, fu: torch.Tensor, fv: torch.Tensor,
    bias: torch.Tensor | None, scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CUBA step before the spike: returns ``(u * 2**-k, v)`` (``syn`` in float units, ``v`` int).

    ``fu = 4096 - (du + 1)`` and ``fv = 4096 - dv`` are the decay multipliers.
    """
    return _SynapticSub.apply(syn, mem, a, fu, fv, bias, scale)
