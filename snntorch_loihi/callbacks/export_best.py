"""ExportBest: keep the NIR graph (and netx HDF5) of the best network by a monitored metric."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .base import Callback, clear_hidden_states, to_device_of

__all__ = ["ExportBest", "NetxExportWarning", "MODES"]

MODES = ("min", "max")


class NetxExportWarning(UserWarning):
    """The best network has no exact netx form; only its NIR file was written."""


class ExportBest(Callback):
    """Write the NIR file (and netx HDF5) of the network whenever ``metrics[monitor]`` improves.

    At the end of each epoch, if ``metrics[monitor]`` beats the best so far (larger with
    ``mode="max"``, smaller with ``"min"``; NaN never does), the network is exported with
    ``snntorch_loihi.export(net, sample, path=<dir>/best.nir)``, written as netx HDF5 with
    ``save_netx(graph, <dir>/best.net)`` when ``netx`` is set, and ``<dir>/best.json`` records
    the epoch, the metric and the files. Files are replaced, never accumulated. A network that
    netx cannot hold exactly (``NetxError``: e.g. a negative weight exponent) gets its NIR file
    only, with a :class:`NetxExportWarning` and the reason in ``best.json``.

    Args:
        path_dir: folder for the files (created when first written).
        monitor: the metric to watch, a key of the ``metrics`` the loop passes.
        mode: ``"max"`` or ``"min"``.
        sample: ONE time step of input as the network takes it (what ``export`` takes),
            e.g. ``x[0, :1]``.
        netx: also write Lava-dl's netx HDF5.

    Raises:
        ValueError: an unknown mode, an empty monitor, ``sample`` not a tensor, or ``path_dir``
            an existing file.
    """

    def __init__(self, path_dir: str | os.PathLike, monitor: str = "val_acc",
                 mode: Literal["min", "max"] = "max", *, sample: torch.Tensor,
                 netx: bool = True) -> None:
        name = "ExportBest"
        if mode not in MODES:
            raise ValueError(f"{name}: mode must be one of {list(MODES)}, got {mode!r}.")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{name}: monitor must be a metric name, got {monitor!r}.")
        if not torch.is_tensor(sample):
            raise ValueError(
                f"{name}: sample must be a tensor (one time step of input, as export takes it), "
                f"got {type(sample).__name__}."
            )
        path = Path(path_dir)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{name}: path_dir must be a folder, got the file '{path}'.")
        self.path_dir, self.monitor, self.mode = path, monitor, mode
        self.sample = sample.detach().cpu()
        self.netx = bool(netx)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.writes = 0
        self._fresh: dict[str, float] = {}

    @property
    def nir_path(self) -> Path:
        return self.path_dir / "best.nir"

    @property
    def netx_path(self) -> Path:
        return self.path_dir / "best.net"

    def is_improvement(self, score: float) -> bool:
        """True if ``score`` beats the best so far (pure)."""
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def score_of(self, metrics: Mapping[str, Any]) -> float:
        """``metrics[monitor]`` as a float.

        Raises:
            ValueError: the metric is missing (names the metrics there are).
        """
        if self.monitor not in metrics:
            raise ValueError(
                f"ExportBest: metrics must contain monitor={self.monitor!r}, got "
                f"{sorted(metrics)}. Pass it in the loop's metrics (Lightning: self.log it)."
            )
        value = metrics[self.monitor]
        return float(value.item() if torch.is_tensor(value) else value)

    def write(self, net: nn.Module, epoch: int, score: float) -> None:
        """Export ``net`` to the files now."""
        from ..export import export

        self.path_dir.mkdir(parents=True, exist_ok=True)
        clear_hidden_states(net)
        graph = export(net, to_device_of(net, self.sample), path=self.nir_path)
        files = [self.nir_path.name]
        netx_error = None
        if self.netx:
            from ..lava.netx import NetxError, save_netx

            try:
                save_netx(graph, self.netx_path)
                files.append(self.netx_path.name)
            except NetxError as exc:  # the NIR file stands; a stale netx file must not
                self.netx_path.unlink(missing_ok=True)
                netx_error = str(exc)
                warnings.warn(f"ExportBest: epoch {epoch}: wrote {self.nir_path} but no netx "
                              f"file: {exc}", NetxExportWarning, stacklevel=2)
        meta = {"epoch": epoch, "monitor": self.monitor, "mode": self.mode, "score": score,
                "files": files, "netx_error": netx_error}
        self.path_dir.joinpath("best.json").write_text(json.dumps(meta, indent=1))
        self.writes += 1

    def on_epoch_end(self, net: nn.Module, epoch: int, metrics: Mapping[str, float]) -> bool:
        score = self.score_of(metrics)
        if self.is_improvement(score):
            self.write(net, epoch, score)
            self.best_score, self.best_epoch = score, epoch
        self._fresh = {} if self.best_score is None else {"export_best/score": self.best_score}
        return False

    def log_dict(self) -> dict[str, float]:
        """``export_best/score``: the best monitored value so far."""
        return dict(self._fresh)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "writes": self.writes}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.writes = state.get("writes", 0)
