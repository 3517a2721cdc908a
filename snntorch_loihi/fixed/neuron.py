"""Loihi's CUBA-LIF neuron as pure tensor functions, bit-exact with Lava's ``fixed_pt`` model.

One step of ``lava.proc.lif.models.PyLifModelBitAcc``, in this order::

    u = rs0(u * (4096 - (du + 1)))          # current decay, round toward zero
    u = wrap24(u + (a_in << 6))              # the current WRAPS (modulo 2**24)
    v = rs0(v * (4096 - dv))                 # voltage decay, round toward zero
    v = clip(v + u + (bias_mant << bias_exp), -(2**23 - 1), 2**23 - 1)   # v SATURATES
    s = v > (vth << 6)                       # strict compare
    v = 0 where s                            # reset to zero in the step of the spike

``rs0(x) = sign(x) * (|x| >> 12)``. Every function works on integer tensors and on float32 /
float64 tensors holding whole numbers, and is exact in both: a 24-bit state times a 12-bit decay
does not fit float32's 24-bit mantissa, so the product is split into a high and a low part whose
partial products do (see :func:`decay`). Each function has a straight-through twin
(``*_ste``) whose forward is identical and whose backward is the derivative of the un-rounded,
un-wrapped arithmetic, for training.
"""

from __future__ import annotations

import torch

from ..spec import LOIHI, LoihiSpec
from .check import check_int_range

__all__ = [
    "current_decay_factor",
    "voltage_decay_factor",
    "decay",
    "decay_ste",
    "wrap_current",
    "wrap_current_ste",
    "saturate_voltage",
    "saturate_voltage_ste",
    "effective_bias",
    "fire",
    "reset_zero",
    "cuba_subthreshold",
    "cuba_subthreshold_ste",
    "cuba_step",
    "check_neuron_registers",
]

Number = int | torch.Tensor


def current_decay_factor(du: Number, spec: LoihiSpec = LOIHI) -> Number:
    """The multiplier Lava applies to ``u``: ``4096 - (du + 1)``."""
    return spec.decay_unity - (du + spec.du_offset)


def voltage_decay_factor(dv: Number, spec: LoihiSpec = LOIHI) -> Number:
    """The multiplier Lava applies to ``v``: ``4096 - dv``."""
    return spec.decay_unity - (dv + spec.dv_offset)


def _as_like(m: Number, x: torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(m):
        return m.to(device=x.device, dtype=x.dtype)
    return torch.tensor(m, device=x.device, dtype=x.dtype)


def _decay_exact(x: torch.Tensor, m: torch.Tensor, spec: LoihiSpec) -> torch.Tensor:
    shift = spec.decay_shift
    if not x.is_floating_point():
        prod = x.to(torch.int64) * m.to(torch.int64)
        return (torch.sign(prod) * (prod.abs() >> shift)).to(x.dtype)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"Loihi core: decay needs float32, float64 or an integer dtype, got {x.dtype}.")
    unity = float(spec.decay_unity)
    ax = x.abs()
    hi = torch.floor(ax / unity)  # |x| = hi * 4096 + lo, lo in [0, 4095]
    lo = ax - hi * unity
    # floor(|x| * m / 4096) = hi * m + floor(lo * m / 4096); each partial product < 2**24.
    mag = hi * m + torch.floor(lo * m / unity)
    return torch.where(x < 0, -mag, mag)


def decay(x: torch.Tensor, factor: Number, spec: LoihiSpec = LOIHI) -> torch.Tensor:
    """``rs0(x * factor) = sign(x * factor) * (|x * factor| >> 12)``, exact for any dtype.

    Args:
        x: integer-valued state (``u`` or ``v``), ``|x| <= 2**24``.
        factor: the decay multiplier in ``[0, 4096]`` (``current_decay_factor(du)`` or
            ``voltage_decay_factor(dv)``), an int or an integer-valued tensor that broadcasts.

    Example:
        >>> decay(torch.tensor([4097., -4097., 1.]), 4095)
        tensor([ 4095., -4095.,     0.])
    """
    return _decay_exact(x, _as_like(factor, x), spec)


class _DecaySTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m, spec):  # type: ignore[override]
        ctx.save_for_backward(x, m)
        ctx.unity = spec.decay_unity
        return _decay_exact(x, m, spec)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, m = ctx.saved_tensors
        gx = g * m / ctx.unity if ctx.needs_input_grad[0] else None
        gm = None
        if ctx.needs_input_grad[1]:
            gm = g * x / ctx.unity
            gm = _sum_to(gm, m.shape)
        return gx, gm, None


def _sum_to(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if g.shape == shape:
        return g
    while g.dim() > len(shape):
        g = g.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(i, keepdim=True)
    return g


def decay_ste(x: torch.Tensor, factor: Number, spec: LoihiSpec = LOIHI) -> torch.Tensor:
    """:func:`decay` with the gradient of ``x * factor / 4096`` (w.r.t. ``x`` and ``factor``)."""
    return _DecaySTE.apply(x, _as_like(factor, x), spec)


def wrap_current(u: torch.Tensor, spec: LoihiSpec = LOIHI) -> torch.Tensor:
    """Wrap ``u`` modulo ``2**24`` into ``(-2**23, 2**23]``, as Lava does (``>`` above, ``<=`` below).

    Exact in float32 for ``|u| < 2**24`` and for any multiple of 64 (``a_in << 6``).

    Example:
        >>> wrap_current(torch.tensor([2.**23, 2.**23 + 1, -2.**23]))
        tensor([ 8388608., -8388607.,  8388608.])
    """
    half, mod = spec.state_max, spec.state_modulus
    if not u.is_floating_point():
        return u - mod * torch.div(u - half + mod - 1, mod, rounding_mode="floor")
    return u - mod * torch.ceil((u - half) / mod)


class _WrapSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):  # type: ignore[override]
        return wrap_current(u)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def wrap_current_ste(u: torch.Tensor) -> torch.Tensor:
    """:func:`wrap_current` forward, identity backward."""
    return _WrapSTE.apply(u)


def saturate_voltage(v: torch.Tensor, spec: LoihiSpec = LOIHI) -> torch.Tensor:
    """Clip ``v`` to ``[-(2**23 - 1), 2**23 - 1]`` (Loihi's voltage saturates, it does not wrap)."""
    return torch.clamp(v, -spec.v_max, spec.v_max)


class _SaturateSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):  # type: ignore[override]
        return saturate_voltage(v)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def saturate_voltage_ste(v: torch.Tensor) -> torch.Tensor:
    """:func:`saturate_voltage` forward, identity backward."""
    return _SaturateSTE.apply(v)


def effective_bias(bias_mant: Number, bias_exp: Number) -> Number:
    """``bias_mant << bias_exp`` (Lava's ``scale_bias``; ``bias_exp`` in ``[0, 7]``).

    Example:
        >>> effective_bias(torch.tensor([-3., 5.]), 2)
        tensor([-12.,  20.])
    """
    if not torch.is_tensor(bias_mant) and not torch.is_tensor(bias_exp):
        return bias_mant * (2**bias_exp)
    m = torch.as_tensor(bias_mant)
    e = torch.as_tensor(bias_exp, device=m.device)
    if m.is_floating_point():
        return m * torch.exp2(e.to(m.dtype))
    return m * torch.pow(2, e.to(torch.int64))


def fire(v: torch.Tensor, vth: Number, spec: LoihiSpec = LOIHI) -> torch.Tensor:
    """Spikes ``v > (vth << 6)`` (strict), as a tensor of v's dtype with values 0 and 1."""
    return (v > vth * (1 << spec.vth_shift)).to(v.dtype)


def reset_zero(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Zero ``v`` where ``s`` spiked (Loihi resets in the step of the spike; ``u`` is kept)."""
    return torch.where(s != 0, torch.zeros_like(v), v)


def check_neuron_registers(
    du: Number, dv: Number, vth: Number, bias_mant: Number = 0, bias_exp: Number = 0,
    *, where: str = "Loihi core", spec: LoihiSpec = LOIHI,
) -> None:
    """Raise :class:`~snntorch_loihi.errors.RegisterRangeError` for a register outside hardware."""
    check_int_range(du, "du", 0, spec.decay_max, where=where)
    check_int_range(dv, "dv", 0, spec.decay_max, where=where)
    check_int_range(vth, "vth", 0, spec.vth_max, where=where)
    check_int_range(bias_mant, "bias_mant", spec.bias_mant_min, spec.bias_mant_max, where=where)
    check_int_range(bias_exp, "bias_exp", 0, spec.bias_exp_max, where=where)


def _shifted_input(a_in: torch.Tensor, spec: LoihiSpec) -> torch.Tensor:
    # a_in << 6, reduced modulo 2**24 first so that every later sum stays exact in float32.
    return a_in * (1 << spec.act_shift)


def cuba_subthreshold(
    a_in: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    du: Number,
    dv: Number,
    bias: Number = 0,
    spec: LoihiSpec = LOIHI,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decay and integrate one step; returns the new ``(u, v)`` before the spike and reset.

    Args:
        a_in: integer synaptic input arriving this step (weight-mantissa units), ``|a_in| < 2**18``.
        u, v: current and voltage, integer-valued, inside 24 bits.
        du, dv: decay registers in ``[0, 4095]``.
        bias: the effective bias ``bias_mant << bias_exp`` (see :func:`effective_bias`).
        check: validate ranges (raises :class:`~snntorch_loihi.errors.RegisterRangeError`).
    """
    if check:
        check_int_range(du, "du", 0, spec.decay_max)
        check_int_range(dv, "dv", 0, spec.decay_max)
        check_int_range(a_in, "a_in", -spec.a_in_max, spec.a_in_max,
                        hint="Lava's one-step wrap of u leaves 24 bits for larger inputs.")
        check_int_range(u, "u", -spec.state_max + 1, spec.state_max)
        check_int_range(v, "v", -spec.v_max, spec.v_max)
    u = decay(u, current_decay_factor(du, spec), spec)
    u = wrap_current(u + wrap_current(_shifted_input(a_in, spec), spec), spec)
    v = saturate_voltage(decay(v, voltage_decay_factor(dv, spec), spec) + u + bias, spec)
    return u, v


def cuba_subthreshold_ste(
    a_in: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    du_factor: Number,
    dv_factor: Number,
    bias: Number = 0,
    spec: LoihiSpec = LOIHI,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through twin of :func:`cuba_subthreshold`, taking the decay multipliers.

    ``du_factor = 4096 - (du + 1)`` and ``dv_factor = 4096 - dv`` may be tensors that require grad
    (``learn_alpha`` / ``learn_beta``). Forward values equal :func:`cuba_subthreshold` exactly.
    """
    u = decay_ste(u, du_factor, spec)
    u = wrap_current_ste(u + wrap_current_ste(_shifted_input(a_in, spec)))
    v = saturate_voltage_ste(decay_ste(v, dv_factor, spec) + u + bias)
    return u, v


def cuba_step(
    a_in: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    du: Number,
    dv: Number,
    vth: Number,
    bias_mant: Number = 0,
    bias_exp: Number = 0,
    spec: LoihiSpec = LOIHI,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Lava's bit-accurate LIF: returns ``(s, u, v)`` with ``v`` after the reset.

    Example:
        >>> a = torch.tensor([3.])
        >>> s, u, v = cuba_step(a, torch.zeros(1), torch.zeros(1), du=4095, dv=0, vth=2)
        >>> s.item(), u.item(), v.item()       # v = 192 > 2 << 6 = 128: spike, reset
        (1.0, 192.0, 0.0)
    """
    if check:
        check_neuron_registers(du, dv, vth, bias_mant, bias_exp, spec=spec)
    bias = effective_bias(bias_mant, bias_exp)
    u, v = cuba_subthreshold(a_in, u, v, du=du, dv=dv, bias=bias, spec=spec, check=check)
    s = fire(v, vth, spec)
    return s, u, reset_zero(v, s)
