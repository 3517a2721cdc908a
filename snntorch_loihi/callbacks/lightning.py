"""Lightning adapters of the plain callbacks (needs ``lightning``; imported only when used).

Each class here is a ``lightning.pytorch.callbacks.Callback`` wrapping the plain callback of the
same name (same arguments, plus ``net_attr``), so a LightningModule trains with the same
schedule, monitors and exports as a hand-written loop::

    from snntorch_loihi.callbacks.lightning import ExportBest, OverflowMonitor, QuantizationSchedule
    trainer = L.Trainer(callbacks=[QuantizationSchedule(float_epochs=2, net_attr="net"),
                                   OverflowMonitor(x_val[:, :8], net_attr="net"),
                                   ExportBest("out", sample=x_val[0, :1], net_attr="net")])

Hook mapping: ``on_train_start`` -> ``on_train_start``; ``on_train_epoch_start`` ->
``on_epoch_start(net, trainer.current_epoch)``; ``on_train_batch_end`` -> ``on_batch_end``;
``on_train_epoch_end`` -> ``on_epoch_end(net, epoch, trainer.callback_metrics)``. Lightning 2
runs an epoch's validation before ``on_train_epoch_end``, so the metrics there hold both what
``training_step`` and what ``validation_step`` / ``on_validation_epoch_end`` logged (``val_acc``
and the like); acting once per epoch there also covers runs without validation.

Under DDP the schedule runs on every rank (each replica must switch), while the monitors, the
Lava parity runs and the file writes run on global rank zero only: the result (stop request,
logged scalars, or the exception raised) is broadcast, so every rank logs the same values with
``pl_module.log``, stops together through ``trainer.should_stop`` and raises together.
Callback state is saved in checkpoints (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

try:
    from lightning.pytorch.callbacks import Callback as _LightningBase
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "snntorch_loihi.callbacks.lightning needs Lightning (lightning>=2.0), which cannot be "
        f"imported: {exc}. Install it with `pip install 'snntorch-loihi[lightning]'`, or use "
        "the plain callbacks of snntorch_loihi.callbacks in your own loop."
    ) from exc

from . import base
from . import export_best as _export_best
from . import overflow as _overflow
from . import parity as _parity
from . import schedule as _schedule

__all__ = ["LightningCallback", "QuantizationSchedule", "OverflowMonitor", "ParityCheck",
           "ExportBest"]

_SCALARS = (bool, int, float, str, type(None))


def _scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if torch.is_tensor(value) and value.numel() == 1:
            out[key] = float(value.item())
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class LightningCallback(_LightningBase):
    """Runs a plain :class:`~snntorch_loihi.callbacks.Callback` inside a Lightning Trainer.

    Args:
        callback: the plain callback.
        net_attr: attribute of the LightningModule that holds the network (e.g. ``"net"``);
            None: the LightningModule itself is the network.
        rank_zero_only: run ``on_epoch_end`` on global rank zero only and broadcast its outcome
            (for work done once: monitoring, Lava, files); False runs every hook on every rank.

    Raises:
        TypeError: ``callback`` is not a plain Callback, or ``net_attr`` not a string.
    """

    def __init__(self, callback: base.Callback, *, net_attr: str | None = None,
                 rank_zero_only: bool = True) -> None:
        super().__init__()
        if not isinstance(callback, base.Callback):
            raise TypeError(
                f"{type(self).__name__}: callback must be a snntorch_loihi.callbacks.Callback, "
                f"got {type(callback).__name__}."
            )
        if net_attr is not None and (not isinstance(net_attr, str) or not net_attr):
            raise TypeError(
                f"{type(self).__name__}: net_attr must be an attribute name or None, got "
                f"{net_attr!r}."
            )
        self.callback = callback
        self.net_attr = net_attr
        self.rank_zero_only = bool(rank_zero_only)
        self._key: dict[str, Any] = {"net_attr": net_attr}

    # ---- Lightning plumbing ---------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self._key)

    def _net(self, pl_module: Any) -> nn.Module:
        if self.net_attr is None:
            return pl_module
        net = getattr(pl_module, self.net_attr, None)
        if not isinstance(net, nn.Module):
            raise ValueError(
                f"{type(self).__name__}: net_attr must name the LightningModule's attribute "
                f"holding the network, got {self.net_attr!r}, which "
                f"{type(pl_module).__name__} does not have as an nn.Module."
            )
        return net

    def _epoch_end(self, net: nn.Module, epoch: int, metrics: dict[str, float],
                   catch: bool) -> tuple[bool, dict[str, float], BaseException | None]:
        try:
            stop = bool(self.callback.on_epoch_end(net, epoch, metrics))
        except Exception as exc:
            if not catch:
                raise
            return False, {}, exc
        return stop, self.callback.log_dict(), None

    # ---- hooks --------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.callback.on_train_start(self._net(pl_module))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.callback.on_epoch_start(self._net(pl_module), trainer.current_epoch)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if type(self.callback).on_batch_end is base.Callback.on_batch_end:
            return  # not overridden: skip the device sync of reading the loss
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        value = float(loss.detach()) if torch.is_tensor(loss) else float("nan")
        self.callback.on_batch_end(self._net(pl_module), trainer.current_epoch, batch_idx, value)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        net = self._net(pl_module)
        epoch = trainer.current_epoch
        metrics = _scalar_metrics(trainer.callback_metrics)
        distributed = trainer.world_size > 1
        if self.rank_zero_only and distributed:
            outcome, local_error = None, None
            if trainer.is_global_zero:
                stop, logs, local_error = self._epoch_end(net, epoch, metrics, catch=True)
                outcome = (stop, logs, _portable(local_error))
            stop, logs, error = trainer.strategy.broadcast(outcome, src=0)
            if local_error is not None:
                raise local_error  # rank zero: the original, with its traceback
            if error is not None:  # the other ranks: the same error, so that all stop together
                raise error from None
        else:
            stop, logs, _ = self._epoch_end(net, epoch, metrics, catch=False)
        for key, value in logs.items():
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=distributed)
        if stop:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return self.callback.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.callback.load_state_dict(state_dict)


def _portable(error: BaseException | None) -> BaseException | None:
    """``error`` if it survives pickling (for a broadcast), else a RuntimeError naming it."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"rank 0 raised {type(error).__name__}: {error}")
    return error


def _key(args: tuple, kwargs: dict) -> dict[str, Any]:
    """The scalar arguments, to tell apart two callbacks of one class in a checkpoint."""
    key = {f"arg{i}": a for i, a in enumerate(args) if isinstance(a, _SCALARS)}
    key.update({k: str(v) if hasattr(v, "__fspath__") else v for k, v in kwargs.items()
                if isinstance(v, _SCALARS) or hasattr(v, "__fspath__")})
    return key


class _Named(LightningCallback):
    _plain: type[base.Callback]
    _all_ranks = False

    def __init__(self, *args: Any, net_attr: str | None = None, **kwargs: Any) -> None:
        super().__init__(self._plain(*args, **kwargs), net_attr=net_attr,
                         rank_zero_only=not self._all_ranks)
        self._key.update(_key(args, kwargs))


class QuantizationSchedule(_Named):
    """Lightning twin of :class:`snntorch_loihi.callbacks.QuantizationSchedule` (runs on every
    rank); logs ``qat/synapses``, ``qat/neurons``, ``qat/frozen``."""

    _plain = _schedule.QuantizationSchedule
    _all_ranks = True


class OverflowMonitor(_Named):
    """Lightning twin of :class:`snntorch_loihi.callbacks.OverflowMonitor` (rank zero); logs
    ``overflow/<layer>/<count>`` and stops through ``trainer.should_stop``."""

    _plain = _overflow.OverflowMonitor


class ParityCheck(_Named):
    """Lightning twin of :class:`snntorch_loihi.callbacks.ParityCheck` (Lava on rank zero);
    logs ``parity/exact`` and ``parity/<layer>/mismatches``."""

    _plain = _parity.ParityCheck


class ExportBest(_Named):
    """Lightning twin of :class:`snntorch_loihi.callbacks.ExportBest` (files on rank zero);
    ``monitor`` is read from ``trainer.callback_metrics``."""

    _plain = _export_best.ExportBest
