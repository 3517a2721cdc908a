"""Quantizers shared by the layers: float parameters -> Loihi register values, with STE gradients.

Every function maps float parameters (snnTorch units) to the integer value Loihi uses, as a
float tensor holding a whole number, with a straight-through gradient, so that the quantized
forward trains the float parameters. The mapping (``k = scale_exp``):

- ``dv = clamp(round(4096 * (1 - beta)), 0, 4095)``   (``beta = 0`` clamps to ``dv = 4095``)
- ``du = clamp(round(4096 * (1 - alpha)) - 1, 0, 4095)`` (``alpha = 1`` clamps to ``du = 0``)
- ``vth = clamp(round(threshold * 2**(k - 6)), 0, 131071)``
- ``weight_mant = clamp(round(w * 2**(k - 6 - weight_exp) / step) * step, lo, hi)`` on Lava's grid
  ``(lo, hi, step) = weight_grid(num_weight_bits, sign_mode)``
- ``bias_mant = clamp(round(b * 2**(k - bias_exp)), -4096, 4095)``

Multiplying by a power of two is exact in float32, so these values are exactly what the integer
registers hold.
"""

from __future__ import annotations

import torch

from ..fixed import round_ste, weight_grid
from ..fixed.synapse import SignMode
from ..spec import LOIHI

__all__ = [
    "quantize_dv",
    "quantize_du",
    "quantize_vth",
    "quantize_weight",
    "quantize_bias",
    "choose_bias_exp",
]


def quantize_dv(beta: torch.Tensor) -> torch.Tensor:
    """``dv = 4096 - clamp(round(4096 * clamp(beta, 0, 1)), 1, 4096)`` with an STE round.

    Equal to ``clamp(round(4096 * (1 - beta)), 0, 4095)`` (4096 is even, so round-half-even
    commutes with ``4096 - x``), but without the inexact float ``1 - beta``.

    Example:
        >>> quantize_dv(torch.tensor(0.9))
        tensor(410.)
    """
    b = beta.clamp(0, 1)
    return LOIHI.decay_unity - torch.clamp(round_ste(LOIHI.decay_unity * b), 1, LOIHI.decay_unity)


def quantize_du(alpha: torch.Tensor) -> torch.Tensor:
    """``du = 4095 - clamp(round(4096 * clamp(alpha, 0, 1)), 0, 4095)`` with an STE round.

    Equal to ``clamp(round(4096 * (1 - alpha)) - 1, 0, 4095)``.

    Example:
        >>> quantize_du(torch.tensor(0.75))
        tensor(1023.)
    """
    a = alpha.clamp(0, 1)
    return LOIHI.decay_max - torch.clamp(round_ste(LOIHI.decay_unity * a), 0, LOIHI.decay_max)


def quantize_vth(threshold: torch.Tensor, scale_exp: int) -> torch.Tensor:
    """``vth = clamp(round(threshold * 2**(scale_exp - 6)), 0, 131071)`` with an STE round.

    Example:
        >>> quantize_vth(torch.tensor(1.0), 16)
        tensor(1024.)
    """
    x = threshold * (2.0 ** (scale_exp - LOIHI.vth_shift))
    return torch.clamp(round_ste(x), 0, LOIHI.vth_max)


def quantize_weight(
    w: torch.Tensor, scale_exp: int, weight_exp: int, num_weight_bits: int, sign_mode: SignMode
) -> torch.Tensor:
    """Weight mantissas on Lava's grid (fixed points of ``truncate_weights``), STE rounding.

    Example:
        >>> quantize_weight(torch.tensor([0.5, -0.26]), 14, 0, 8, "mixed")
        tensor([128., -66.])
    """
    lo, hi, step = weight_grid(num_weight_bits, sign_mode)
    x = w * (2.0 ** (scale_exp - LOIHI.act_shift - weight_exp - (step.bit_length() - 1)))
    return torch.clamp(round_ste(x) * step, lo, hi)


def quantize_bias(b: torch.Tensor, scale_exp: int, bias_exp: torch.Tensor) -> torch.Tensor:
    """The effective bias ``bias_mant << bias_exp`` (integer units of ``v``), STE rounding.

    Example:
        >>> quantize_bias(torch.tensor([0.25, 3.0]), 10, torch.tensor([0, 1]))
        tensor([ 256., 3072.])
    """
    scale = torch.exp2(bias_exp.to(b.dtype))
    mant = torch.clamp(round_ste(b * (2.0**scale_exp) / scale), LOIHI.bias_mant_min,
                       LOIHI.bias_mant_max)
    return mant * scale


@torch.no_grad()
def choose_bias_exp(
    b: torch.Tensor, scale_exp: int, min_exp: int = LOIHI.netx_bias_exp
) -> torch.Tensor:
    """Smallest per-neuron ``bias_exp`` in ``[min_exp, 7]`` whose mantissa fits 13 signed bits.

    The default ``min_exp = 6`` is the exponent lava-dl netx writes for every bias, so that the
    same registers load through netx; the bias resolution is then one weight LSB
    (``2**(6 - scale_exp)`` in float units). Pass ``min_exp=0`` for the finest resolution Lava's
    processes (but not netx) can hold.

    Example:
        >>> choose_bias_exp(torch.tensor([0.5, 100.0]), 10, min_exp=0).tolist()
        [0, 5]
        >>> choose_bias_exp(torch.tensor([0.5, 100.0]), 10).tolist()
        [6, 6]
    """
    x = b.detach().abs() * (2.0**scale_exp)
    e = torch.full_like(x, min_exp, dtype=torch.int64)
    for cand in range(LOIHI.bias_exp_max, min_exp - 1, -1):
        fits = torch.round(x / 2.0**cand) <= LOIHI.bias_mant_max
        e = torch.where(fits, torch.full_like(e, cand), e)
    return torch.where(
        torch.round(x / 2.0**LOIHI.bias_exp_max) > LOIHI.bias_mant_max,
        torch.full_like(e, LOIHI.bias_exp_max), e,
    )
