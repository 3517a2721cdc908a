"""A tiny callback protocol for plain (hand-written) training loops.

There is no trainer here: a loop calls the hooks of a :class:`CallbackList` at four points, and
each callback acts on the network only through the package's public toggles. The same callbacks
run under Lightning through :mod:`snntorch_loihi.callbacks.lightning`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from snntorch_loihi.callbacks import Callback, CallbackList
    >>> class StopAfter(Callback):
    ...     def on_epoch_end(self, net, epoch, metrics):
    ...         return epoch >= 1                  # ask the loop to stop after epoch 1
    >>> net, callbacks = nn.Linear(2, 1), CallbackList([StopAfter()])
    >>> callbacks.on_train_start(net)
    >>> for epoch in range(10):
    ...     callbacks.on_epoch_start(net, epoch)
    ...     loss = float(net(torch.ones(2)).pow(2).sum())     # train_epoch(...) in real code
    ...     if callbacks.on_epoch_end(net, epoch, {"loss": loss}):
    ...         break
    >>> epoch
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["Callback", "CallbackList", "check_non_negative_int", "check_positive_int",
           "clear_hidden_states", "to_device_of"]


def to_device_of(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on the device of ``net``'s first parameter (or buffer); unchanged if it has none."""
    for t in (*net.parameters(), *net.buffers()):
        return x.to(t.device)
    return x


def clear_hidden_states(net: nn.Module) -> None:
    """Zero the hidden states of every snnTorch neuron in ``net`` (their public ``reset_mem``).

    The states left by the last training batch are still attached to its autograd graph, and
    such a network cannot be deep-copied (which export and verify do). Every run resets the
    states first anyway, so clearing them between epochs changes nothing else.
    """
    for module in net.modules():
        reset_mem = getattr(module, "reset_mem", None)
        if callable(reset_mem) and torch.is_tensor(getattr(module, "mem", None)):
            reset_mem()


def check_non_negative_int(owner: str, name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is an int ``>= 0`` (or None where allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative integer (an epoch index or "
                         f"count), got {value!r}.")


def check_positive_int(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an int ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")


class Callback:
    """Base class: every hook is a no-op; override the ones you need.

    Epochs are 0-based. ``on_epoch_end`` returns True to ask the loop to stop. A callback keeps
    everything it needs to resume in :meth:`state_dict` (plain Python values, so that
    ``torch.save`` and Lightning checkpoints hold it).
    """

    def on_train_start(self, net: nn.Module) -> None:
        """Called once before the first epoch (also after resuming)."""

    def on_epoch_start(self, net: nn.Module, epoch: int) -> None:
        """Called before epoch ``epoch`` trains."""

    def on_batch_end(self, net: nn.Module, epoch: int, batch: int, loss: float) -> None:
        """Called after each optimizer step with the batch index and its loss."""

    def on_epoch_end(self, net: nn.Module, epoch: int, metrics: Mapping[str, float]) -> bool | None:
        """Called after epoch ``epoch`` (and its validation); return True to request a stop."""
        return None

    def log_dict(self) -> dict[str, float]:
        """Scalars of the latest check (``{"<group>/<name>": value}``), for a logger."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What this callback needs to resume (empty for a stateless callback)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList(Callback):
    """Calls a list of callbacks in order; ``on_epoch_end`` is True if any asked to stop.

    Every callback runs its hook even when an earlier one asks to stop. ``stop_requested``
    remembers the last answer of ``on_epoch_end``.

    Args:
        callbacks: the callbacks, called in this order.

    Raises:
        TypeError: an element is not a :class:`Callback`.
    """

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"CallbackList: callbacks[{i}] must be a snntorch_loihi.callbacks.Callback, "
                    f"got {type(cb).__name__}. Subclass Callback (a Lightning callback goes to "
                    f"the Trainer instead)."
                )
        self.stop_requested = False

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def on_train_start(self, net: nn.Module) -> None:
        self.stop_requested = False
        for cb in self.callbacks:
            cb.on_train_start(net)

    def on_epoch_start(self, net: nn.Module, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(net, epoch)

    def on_batch_end(self, net: nn.Module, epoch: int, batch: int, loss: float) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(net, epoch, batch, loss)

    def on_epoch_end(self, net: nn.Module, epoch: int, metrics: Mapping[str, float]) -> bool:
        answers = [bool(cb.on_epoch_end(net, epoch, metrics)) for cb in self.callbacks]
        self.stop_requested = any(answers)
        return self.stop_requested

    def log_dict(self) -> dict[str, float]:
        """The union of the callbacks' :meth:`Callback.log_dict`."""
        out: dict[str, float] = {}
        for cb in self.callbacks:
            out.update(cb.log_dict())
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"<index>:<class name>": state}`` for every callback."""
        return {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(self.callbacks)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore every callback; the keys must match this list's callbacks.

        Raises:
            ValueError: the saved callbacks differ from this list's.
        """
        expected = list(self.state_dict())
        if sorted(state) != sorted(expected):
            raise ValueError(
                f"CallbackList: state must hold the callbacks {expected}, got {sorted(state)}. "
                f"Build the list with the same callbacks, in the same order, as when it was saved."
            )
        for key, cb in zip(expected, self.callbacks, strict=True):
            cb.load_state_dict(state[key])
