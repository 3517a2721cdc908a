"""Straight-through rounding: exact integer forward, identity backward.

Each op is a private ``autograd.Function`` with a small public wrapper (the brevitas pattern).
"""

from __future__ import annotations

import torch

__all__ = ["round_ste", "floor_ste", "trunc_ste", "clamp_ste"]


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


class _TruncSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.trunc(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


class _ClampSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):  # type: ignore[override]
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g, None, None


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, pass the gradient straight through.

    Example:
        >>> x = torch.tensor([0.4, 1.5, -2.6], requires_grad=True)
        >>> y = round_ste(x); y.sum().backward()
        >>> y.tolist(), x.grad.tolist()
        ([0.0, 2.0, -3.0], [1.0, 1.0, 1.0])
    """
    return _RoundSTE.apply(x)


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor`` forward, identity backward."""
    return _FloorSTE.apply(x)


def trunc_ste(x: torch.Tensor) -> torch.Tensor:
    """Round toward zero forward, identity backward."""
    return _TruncSTE.apply(x)


def clamp_ste(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``clamp`` forward, identity backward (a straight-through clip)."""
    return _ClampSTE.apply(x, lo, hi)
