"""ParityCheck: every few epochs, compare the torch forward with Lava on a fixed batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import LoihiError
from .base import Callback, check_positive_int, clear_hidden_states

__all__ = ["ParityCheck", "ParityMismatchError", "BACKENDS"]

BACKENDS = ("lava", "netx")
"""Backends :func:`snntorch_loihi.verify.verify` runs the integer network on."""


class ParityMismatchError(LoihiError, RuntimeError):
    """The trained network and its Loihi simulation disagree (``ParityCheck`` with
    ``raise_on_mismatch=True``)."""


def _per_layer(report: Any) -> tuple[dict[str, int], dict[str, int | None]]:
    """``({layer: spike mismatches}, {layer: first diverging step})`` of a ParityReport."""
    layers = list(report.layers)
    return ({str(lp.name): int(lp.spike_mismatches) for lp in layers},
            {str(lp.name): lp.first_divergence for lp in layers})


def _preload_lava() -> None:
    """Import Lava now, if it is installed (verify raises a clear error later if not).

    Lava's import calls ``multiprocessing.set_start_method('fork')``, which fails once anything
    has fixed the start method, as a DDP run has by the time an epoch ends; importing it when
    the callback is built, before the Trainer starts, avoids that.
    """
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return


class ParityCheck(Callback):
    """Every ``every`` epochs, run :func:`snntorch_loihi.verify` on a small fixed batch.

    Records ``{"epoch", "exact", "mismatches": {layer: spike mismatches}, "first_divergence":
    {layer: step or None}, "backend"}`` in :attr:`history` (and in
    :meth:`log_dict` as ``parity/exact`` and ``parity/<layer>/mismatches``). With
    ``raise_on_mismatch`` a report that is not exact raises :class:`ParityMismatchError`; else
    training continues. Lava runs are slow: keep the batch to a few samples and ``every`` large.

    Args:
        inputs: ``(T, B, *input_shape)`` spikes, as ``verify`` takes them.
        every: check after epochs ``every - 1, 2 * every - 1, ...``.
        backend: where the integer network runs, one of :data:`BACKENDS` (``"netx"`` writes
            and loads lava-dl netx HDF5).
        raise_on_mismatch: raise instead of only recording a mismatch (a ``verify`` that
            cannot run at all raises in any case).
        float_drift: also count spikes that Lava's float models get wrong (a second Lava run).

    Raises:
        ValueError: ``inputs`` is not a ``(T, B, ...)`` tensor, ``every`` is not a positive
            integer, or ``backend`` is unknown.
    """

    def __init__(self, inputs: torch.Tensor, every: int = 1, backend: str = "lava",
                 raise_on_mismatch: bool = False, float_drift: bool = False) -> None:
        name = "ParityCheck"
        if not torch.is_tensor(inputs) or inputs.dim() < 3:
            got = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
            raise ValueError(
                f"{name}: inputs must be a (T, B, *input_shape) tensor of spikes, got {got}."
            )
        check_positive_int(name, "every", every)
        if backend not in BACKENDS:
            raise ValueError(f"{name}: backend must be one of {list(BACKENDS)}, got {backend!r}.")
        self.inputs = inputs.detach().cpu()
        self.every, self.backend = every, backend
        self.raise_on_mismatch = bool(raise_on_mismatch)
        self.float_drift = bool(float_drift)
        _preload_lava()
        self.history: list[dict[str, Any]] = []
        self._fresh: dict[str, float] = {}

    def due(self, epoch: int) -> bool:
        """True if the check runs after epoch ``epoch``."""
        return (epoch + 1) % self.every == 0

    def check(self, net: nn.Module, epoch: int) -> dict[str, Any]:
        """Run ``verify`` now; returns (and records) the history entry."""
        from ..verify import verify

        clear_hidden_states(net)
        report = verify(net, self.inputs, backend=self.backend, float_drift=self.float_drift)
        mismatches, first = _per_layer(report)
        entry = {"epoch": epoch, "exact": bool(report.exact), "mismatches": mismatches,
                 "first_divergence": first, "backend": self.backend}
        self.history.append(entry)
        return entry

    def on_epoch_end(self, net: nn.Module, epoch: int, metrics: Mapping[str, float]) -> bool:
        self._fresh = {}
        if not self.due(epoch):
            return False
        entry = self.check(net, epoch)
        self._fresh = {"parity/exact": float(entry["exact"])}
        self._fresh.update({f"parity/{k}/mismatches": float(v)
                            for k, v in entry["mismatches"].items()})
        if not entry["exact"] and self.raise_on_mismatch:
            bad = {k: v for k, v in entry["mismatches"].items() if v}
            raise ParityMismatchError(
                f"ParityCheck: epoch {epoch}: the network must match {self.backend} exactly, "
                f"got spike mismatches {bad or 'none, but u or v differ'}. Check the layers' registers "
                f"(snntorch_loihi.verify gives the full report), or pass "
                f"raise_on_mismatch=False to only record it."
            )
        return False

    def log_dict(self) -> dict[str, float]:
        """``parity/exact`` and ``parity/<layer>/mismatches`` of the latest ``on_epoch_end``."""
        return dict(self._fresh)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [dict(h) for h in state["history"]]
