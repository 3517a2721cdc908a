"""Loihi synapses as pure tensor functions: Lava's weight conversion, Dense and Conv accumulation.

Dense (``lava.proc.dense.models.PyDenseModelBitAcc``): the weight matrix is converted once, for
the whole matrix (:func:`truncate_weights`); each step it sends the previous step's result and
accumulates ``acc = W @ s`` (binary spikes: the sum of the columns that spiked; graded spikes:
the integer payload, unscaled), then ``a = acc << weight_exp`` or ``acc >> -weight_exp``
(floor of the SUM, not of each product).

Conv (``lava.proc.conv.models.PyConvModelFixed``): a true convolution (flipped kernel), so a
PyTorch cross-correlation with weight ``W`` equals Lava's Conv given ``W`` flipped; no weight
exponent, no LSB truncation, the result wraps to 24 bits. The package keeps conv weights on
the same 8-bit mantissa grid as Dense weights and their exponent at 0 (the neuron's integer
scale absorbs the layer's range instead).

The one-step delay of every synapse is not part of these functions: it is state, and lives in
the layers and in the Lava runner.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import RegisterRangeError
from ..spec import LOIHI, LoihiSpec
from .check import check_int_range
from .ste import floor_ste

__all__ = [
    "SignMode",
    "determine_sign_mode",
    "truncate_weights",
    "weight_grid",
    "shift_by_exponent",
    "dense_accumulate",
    "conv_accumulate",
    "check_weights",
]

SignMode = Literal["excitatory", "inhibitory", "mixed"]


def determine_sign_mode(weight_mant: torch.Tensor) -> SignMode:
    """Lava's rule: excitatory if ``min(W) >= 0``, inhibitory if ``max(W) <= 0``, else mixed."""
    if weight_mant.numel() == 0 or weight_mant.min().item() >= 0:
        return "excitatory"
    if weight_mant.max().item() <= 0:
        return "inhibitory"
    return "mixed"


def _num_truncate_bits(num_weight_bits: int, sign_mode: SignMode, spec: LoihiSpec) -> int:
    if not 1 <= num_weight_bits <= spec.weight_bits:
        raise RegisterRangeError(
            f"Loihi core: num_weight_bits must be an integer in [1, {spec.weight_bits}], "
            f"got {num_weight_bits}."
        )
    return spec.weight_bits - num_weight_bits + int(sign_mode == "mixed")


def truncate_weights(
    weight_mant: torch.Tensor,
    num_weight_bits: int = 8,
    sign_mode: SignMode | None = None,
    spec: LoihiSpec = LOIHI,
) -> torch.Tensor:
    """The weights Lava's Dense actually uses: sign mode, clip, LSB truncation.

    Mirrors ``PyDenseModelBitAcc`` (``clip_weights`` then ``truncate_weights`` of
    ``lava.utils.weightutils``)::

        mode = sign_mode or (EXC if min(W) >= 0, INH if max(W) <= 0, else MIXED)
        INH: W = -W;  W = clip(W, -256 if MIXED else 0, 255)
        nt = 8 - num_weight_bits + (MIXED);  W = (W >> nt) << nt;  INH: W = -W

    Example:
        >>> truncate_weights(torch.tensor([51, -33, 255, 300]))
        tensor([ 50, -34, 254, 254])
    """
    mode = sign_mode or determine_sign_mode(weight_mant)
    nt = _num_truncate_bits(num_weight_bits, mode, spec)
    w = -weight_mant if mode == "inhibitory" else weight_mant
    w = torch.clamp(w, spec.weight_min if mode == "mixed" else 0, spec.weight_max)
    step = 1 << nt
    w = torch.floor(w / step) * step if w.is_floating_point() else (w >> nt) << nt
    return -w if mode == "inhibitory" else w


def weight_grid(
    num_weight_bits: int = 8, sign_mode: SignMode = "mixed", spec: LoihiSpec = LOIHI
) -> tuple[int, int, int]:
    """``(lo, hi, step)`` of the mantissas :func:`truncate_weights` leaves unchanged.

    Example:
        >>> weight_grid(8, "mixed"), weight_grid(2, "mixed"), weight_grid(8, "inhibitory")
        ((-256, 254, 2), (-256, 128, 128), (-255, 0, 1))
    """
    step = 1 << _num_truncate_bits(num_weight_bits, sign_mode, spec)
    top = (spec.weight_max // step) * step
    if sign_mode == "excitatory":
        return 0, top, step
    if sign_mode == "inhibitory":
        return -top, 0, step
    return spec.weight_min, top, step


def check_weights(
    weight_mant: torch.Tensor, weight_exp: int = 0, *, where: str = "Loihi core",
    spec: LoihiSpec = LOIHI,
) -> None:
    """Raise unless mantissas are integers in ``[-256, 255]`` and ``weight_exp`` in ``[-8, 7]``."""
    check_int_range(weight_mant, "weight_mant", spec.weight_min, spec.weight_max, where=where)
    check_int_range(weight_exp, "weight_exp", spec.weight_exp_min, spec.weight_exp_max, where=where)


def shift_by_exponent(acc: torch.Tensor, weight_exp: int) -> torch.Tensor:
    """``acc << weight_exp`` or ``acc >> -weight_exp`` (floor), with a straight-through gradient."""
    if weight_exp >= 0:
        return acc * (1 << weight_exp)
    if not acc.is_floating_point():
        return acc >> (-weight_exp)
    return floor_ste(acc / (1 << -weight_exp))


def _check_float_exact(bound: float, dtype: torch.dtype, what: str) -> None:
    if dtype == torch.float32 and bound >= LOIHI.float32_exact:
        raise RegisterRangeError(
            f"Loihi core: {what} must stay below 2**24 to be exact in float32, got a bound of "
            f"{bound:.0f}. Use float64 or integer tensors for such inputs."
        )


def _check_spikes(s: torch.Tensor, graded: bool) -> None:
    if graded:
        check_int_range(s, "graded spike payload", -(2**23), 2**23)
    elif s.numel() and not bool(((s == 0) | (s == 1)).all()):
        raise RegisterRangeError(
            "Loihi core: binary spikes must be 0 or 1, got other values. Pass graded=True for "
            "integer payloads (num_message_bits > 0)."
        )


def _int_matmul(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if s.device.type == "cpu":
        return s.to(torch.int64) @ w.to(torch.int64).T
    # integer matmul is CPU-only in torch: float64 is exact for |acc| < 2**53
    return (s.to(torch.float64) @ w.to(torch.float64).T).to(torch.int64)


def dense_accumulate(
    s: torch.Tensor,
    weight_mant: torch.Tensor,
    weight_exp: int = 0,
    *,
    graded: bool = False,
    check: bool = True,
) -> torch.Tensor:
    """One step of Dense accumulation: ``(W @ s) << weight_exp`` (floor for negative exponents).

    Args:
        s: spikes ``(..., in)``: 0/1, or integer payloads with ``graded=True``.
        weight_mant: ``(out, in)`` integer mantissas as Lava uses them (see
            :func:`truncate_weights`); may be a float tensor that requires grad.
        weight_exp: the layer's exponent, applied to the sum.

    Returns:
        ``(..., out)`` integer-valued tensor (``a_in`` of the next neuron, one step later).

    Example:
        >>> w = torch.tensor([[3., -5.], [7., 1.]])
        >>> dense_accumulate(torch.tensor([1., 1.]), w, -1)     # floor([-2, 8] / 2)
        tensor([-1.,  4.])
    """
    if check:
        check_weights(weight_mant.detach(), weight_exp)
        _check_spikes(s, graded)
        if s.is_floating_point():
            bound = weight_mant.detach().abs().sum(1).max().item() if weight_mant.numel() else 0
            _check_float_exact(bound * (s.abs().max().item() if s.numel() else 0), s.dtype,
                               "the Dense accumulator")
    if not s.is_floating_point() and not weight_mant.is_floating_point():
        acc = _int_matmul(s, weight_mant)
    else:
        acc = F.linear(s, weight_mant.to(s.dtype) if s.is_floating_point() else weight_mant)
    return shift_by_exponent(acc, weight_exp)


def conv_accumulate(
    s: torch.Tensor,
    weight_mant: torch.Tensor,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    graded: bool = False,
    check: bool = True,
) -> torch.Tensor:
    """One step of Lava's fixed-point Conv, as a cross-correlation: ``wrap24(conv2d(s, W))``.

    ``wrap24`` is Lava's ``signed_clamp(x, 24)``, modular into ``[-2**23, 2**23 - 1]``.

    Lava computes a true convolution; pass it ``W`` flipped in both spatial axes (the converter
    does) and the result equals this function. Lava ignores ``weight_exp`` for Conv.

    Args:
        s: ``(N, C_in, H, W)`` or ``(C_in, H, W)`` spikes or graded payloads.
        weight_mant: ``(C_out, C_in / groups, kH, kW)`` integer mantissas.
    """
    if check:
        check_weights(weight_mant.detach(), 0)
        _check_spikes(s, graded)
        if s.is_floating_point():
            bound = weight_mant.detach().abs().flatten(1).sum(1).max().item()
            _check_float_exact(bound * (s.abs().max().item() if s.numel() else 0), s.dtype,
                               "the Conv accumulator")
    if s.is_floating_point():
        acc = F.conv2d(s, weight_mant.to(s.dtype), None, stride, padding, dilation, groups)
    else:  # integer convolution is not implemented in torch: float64 is exact here
        acc = F.conv2d(s.to(torch.float64), weight_mant.to(torch.float64), None, stride,
                       padding, dilation, groups).to(s.dtype)
    return _signed_wrap24(acc)


def _signed_wrap24(x: torch.Tensor, spec: LoihiSpec = LOIHI) -> torch.Tensor:
    """Lava's Conv wrap ``signed_clamp(x, 24) = (x + 2**23) % 2**24 - 2**23``: into
    ``[-2**23, 2**23 - 1]`` (the neuron's current wraps into ``(-2**23, 2**23]`` instead)."""
    half, mod = spec.state_max, spec.state_modulus
    if x.is_floating_point():
        return x - mod * torch.floor((x + half) / mod)
    return x - mod * torch.div(x + half, mod, rounding_mode="floor")
