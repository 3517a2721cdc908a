"""Lava backends, imported lazily: importing this package imports nothing from Lava.

``LavaNetwork`` (a :class:`~snntorch_loihi.ir.LoihiNetwork` compiled once on Lava's CPU
simulation, many samples per run) is loaded on first access; it raises
:class:`~snntorch_loihi.errors.LavaUnavailableError` if Lava cannot be imported.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
import warnings
from typing import Any

__all__ = ["LavaNetwork", "to_lava", "LavaModel", "save_netx", "check_netx", "run_netx",
           "NetxNetwork", "NetxError"]

_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _guard_start_method() -> None:
    """Let Lava import after something else fixed multiprocessing's start method.

    Lava's runtime calls ``multiprocessing.set_start_method('fork')`` when it is imported, which
    raises ``RuntimeError: context has already been set`` if anything created a multiprocessing
    object first (tqdm's write lock does, at its first progress bar). Lava needs 'fork'; where the
    method is already fixed, import Lava's module with that call forced (a warning says so if the
    method was something other than 'fork').
    """
    current = multiprocessing.get_start_method(allow_none=True)
    if _LAVA_MP in sys.modules or current is None:
        return
    if current != "fork":
        warnings.warn(f"Lava needs the 'fork' start method; switching multiprocessing from "
                      f"{current!r} to 'fork'.", RuntimeWarning, stacklevel=3)
    original = multiprocessing.set_start_method

    def forced(method: str | None, force: bool = False) -> None:
        original(method, force=True)

    multiprocessing.set_start_method = forced  # type: ignore[assignment]
    try:
        importlib.import_module(_LAVA_MP)
    except ImportError:  # Lava missing: the runner raises LavaUnavailableError
        pass
    finally:
        multiprocessing.set_start_method = original  # type: ignore[assignment]


_guard_start_method()

_LAZY = {
    "LavaNetwork": "snntorch_loihi.lava.runner",
    "to_lava": "snntorch_loihi.lava.convert",
    "LavaModel": "snntorch_loihi.lava.convert",
    "save_netx": "snntorch_loihi.lava.netx",
    "check_netx": "snntorch_loihi.lava.netx",
    "run_netx": "snntorch_loihi.lava.netx",
    "NetxNetwork": "snntorch_loihi.lava.netx",
    "NetxError": "snntorch_loihi.lava.netx",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'snntorch_loihi.lava' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
