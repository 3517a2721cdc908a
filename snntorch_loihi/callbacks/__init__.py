"""Training-loop callbacks for quantization-aware fine-tuning (plain loops and Lightning).

The plain callbacks follow :class:`Callback`'s four hooks and run in a hand-written loop through
:class:`CallbackList`; the Lightning adapters of the same names live in
:mod:`snntorch_loihi.callbacks.lightning` (imported only when used, so Lightning stays optional).

Example:
    A five-line snnTorch-style loop (``train_epoch`` / ``accuracy`` from
    :mod:`snntorch_loihi.training`)::

        callbacks = CallbackList([QuantizationSchedule(float_epochs=2, freeze_epoch=4),
                                  OverflowMonitor(x_val[:, :8]), ExportBest("out", sample=x_val[0, :1])])
        callbacks.on_train_start(net)
        for epoch in range(6):
            callbacks.on_epoch_start(net, epoch)
            loss = train_epoch(net, x, y, optimizer, loss_fn, steps=T + delay_steps(net))
            if callbacks.on_epoch_end(net, epoch, {"loss": loss, "val_acc": accuracy(net, x_val, y_val)}):
                break
"""

from .base import Callback, CallbackList
from .export_best import ExportBest
from .overflow import LayerOverflow, OverflowMonitor, OverflowWarning, count_overflows
from .parity import ParityCheck, ParityMismatchError
from .schedule import QuantizationPhase, QuantizationSchedule

__all__ = [
    "Callback",
    "CallbackList",
    "QuantizationSchedule",
    "QuantizationPhase",
    "OverflowMonitor",
    "OverflowWarning",
    "LayerOverflow",
    "count_overflows",
    "ParityCheck",
    "ParityMismatchError",
    "ExportBest",
]
