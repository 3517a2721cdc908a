"""Range checks of integer registers and integer-valued tensors."""

from __future__ import annotations

import torch

from ..errors import RegisterRangeError

__all__ = ["check_int_range", "is_integral"]


def is_integral(x: torch.Tensor | int) -> bool:
    """True if every element of ``x`` is a whole number (any dtype)."""
    if isinstance(x, int):
        return True
    if not torch.is_tensor(x):
        x = torch.as_tensor(x)
    if not x.is_floating_point():
        return True
    return bool(torch.equal(x, torch.trunc(x))) and bool(torch.isfinite(x).all())


def check_int_range(
    x: torch.Tensor | int, name: str, lo: int, hi: int, *, where: str = "Loihi core", hint: str = ""
) -> None:
    """Raise :class:`RegisterRangeError` unless ``x`` is integral and inside ``[lo, hi]``.

    Example:
        >>> check_int_range(4096, "du", 0, 4095)
        Traceback (most recent call last):
        ...
        snntorch_loihi.errors.RegisterRangeError: Loihi core: du must be an integer in [0, 4095], got 4096.
    """
    t = x if torch.is_tensor(x) else torch.as_tensor(x)
    if t.numel() == 0:
        return
    bad = None
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = "a non-finite value"
    elif not is_integral(t):
        frac = t[t != torch.trunc(t)]
        bad = f"{frac.flatten()[0].item()!r} (not an integer)"
    else:
        tmin, tmax = t.min().item(), t.max().item()
        if tmin < lo:
            bad = f"{int(tmin)}"
        elif tmax > hi:
            bad = f"{int(tmax)}"
    if bad is not None:
        msg = f"{where}: {name} must be an integer in [{lo}, {hi}], got {bad}."
        if hint:
            msg += " " + hint
        raise RegisterRangeError(msg)
