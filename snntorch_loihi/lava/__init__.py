"""Lava backends, imported lazily: importing this package imports nothing from Lava.

``LavaNetwork`` (a :class:`~snntorch_loihi.ir.LoihiNetwork` compiled once on Lava's CPU
simulation, many samples per run) is loaded on first access; it raises
:class:`~snntorch_loihi.errors.LavaUnavailableError` if Lava cannot be imported.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LavaNetwork"]

_LAZY = {"LavaNetwork": "snntorch_loihi.lava.runner"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'snntorch_loihi.lava' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
