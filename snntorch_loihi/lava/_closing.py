"""A base for objects that hold a Lava runtime: ``with`` blocks and garbage collection close it."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["Closing"]


class Closing:
    """``close()`` on leaving a ``with`` block (also on error) and, best effort, on deletion."""

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()
