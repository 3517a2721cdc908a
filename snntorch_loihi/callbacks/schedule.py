"""QuantizationSchedule: float warm-up, then quantization-aware training, then frozen scales."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from .base import Callback, check_non_negative_int

__all__ = ["QuantizationPhase", "QuantizationSchedule"]


@dataclass(frozen=True)
class QuantizationPhase:
    """What an epoch runs with: which layers are quantized, and whether scales are frozen."""

    synapses: bool
    """Synapse layers (``QuantLinear``, ``QuantConv2d``, recurrent weights) quantized."""
    neurons: bool
    """QuantAware neurons quantized."""
    frozen: bool
    """Calibrated scales and exponents frozen (``freeze_calibration``) from this epoch on."""


def _is_synapse(module: nn.Module) -> bool:
    from ..nn.synapses import QuantSumPool2d, QuantSynapseMixin

    return isinstance(module, QuantSynapseMixin | QuantSumPool2d)


def _quant_modules(net: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(synapses, neurons)``: every module of ``net`` that has a ``quantized`` switch."""
    synapses, neurons = [], []
    for module in net.modules():
        if not hasattr(module, "quantized"):
            continue
        (synapses if _is_synapse(module) else neurons).append(module)
    return synapses, neurons


class QuantizationSchedule(Callback):
    """Train in float for ``float_epochs`` epochs, then quantization-aware; optionally staged.

    At the start of every epoch ``e`` (0-based) the schedule sets each layer's mode with the
    public toggles ``enable_quantization`` / ``disable_quantization``:

    - synapses are quantized from epoch ``float_epochs`` on;
    - neurons from epoch ``float_epochs`` on, or, with ``staged``, one epoch later
      (``staged=True``) or from epoch ``staged`` (an int);
    - at the start of every quantized epoch before ``freeze_epoch`` it calls ``calibrate(net)``
      (with ``recalibrate``), so the scales and exponents follow the float parameters as they
      train; at the first epoch ``>= freeze_epoch`` it calibrates once more and calls
      ``freeze_calibration(net)``, and they stay fixed from then on.

    The decision is :meth:`phase` (pure); the hooks only apply it, so resuming at any epoch
    restores the same modes.

    In a staged epoch the synapses compute with Loihi's integer weights while the neurons keep
    snnTorch's float dynamics: a float-mode neuron converts the integer ``a_in`` of a quantized
    synapse to float units (``a_in * 2**(6 - k)``, exact), so the network equals the float
    network with its weights replaced by their quantized values (no synaptic delay yet).

    Args:
        float_epochs: epochs of float warm-up (quantization disabled); 0 quantizes from the start.
        freeze_epoch: epoch at whose start calibration is frozen; None never freezes. Must be
            ``>= float_epochs``.
        staged: False (all layers switch together), True (neurons one epoch after the
            synapses), or the epoch at which neurons switch (``>= float_epochs``).
        recalibrate: call ``calibrate(net)`` at the start of each quantized, unfrozen epoch.

    Raises:
        ValueError: a negative or non-integer epoch, or an epoch order that cannot happen.

    Example:
        >>> s = QuantizationSchedule(float_epochs=2, freeze_epoch=4, staged=True)
        >>> [(e, s.phase(e).synapses, s.phase(e).neurons, s.phase(e).frozen) for e in (1, 2, 3, 4)]
        [(1, False, False, False), (2, True, False, False), (3, True, True, False), (4, True, True, True)]
    """

    def __init__(self, float_epochs: int = 0, freeze_epoch: int | None = None,
                 staged: bool | int = False, recalibrate: bool = True) -> None:
        name = "QuantizationSchedule"
        check_non_negative_int(name, "float_epochs", float_epochs)
        check_non_negative_int(name, "freeze_epoch", freeze_epoch, allow_none=True)
        if freeze_epoch is not None and freeze_epoch < float_epochs:
            raise ValueError(
                f"{name}: freeze_epoch must be >= float_epochs (scales are calibrated while "
                f"training quantized), got freeze_epoch={freeze_epoch} with "
                f"float_epochs={float_epochs}."
            )
        if isinstance(staged, bool):
            neuron_epoch = float_epochs + int(staged)
        else:
            check_non_negative_int(name, "staged", staged)
            if staged < float_epochs:
                raise ValueError(
                    f"{name}: staged (the epoch neurons are quantized) must be >= float_epochs, "
                    f"got staged={staged} with float_epochs={float_epochs}. Pass True for one "
                    f"epoch after the synapses."
                )
            neuron_epoch = staged
        self.float_epochs = float_epochs
        self.freeze_epoch = freeze_epoch
        self.staged = staged
        self.neuron_epoch = neuron_epoch
        self.recalibrate = bool(recalibrate)
        self.frozen_at: int | None = None
        self.history: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return (f"QuantizationSchedule(float_epochs={self.float_epochs}, "
                f"freeze_epoch={self.freeze_epoch}, staged={self.staged})")

    # ---- decision ---------------------------------------------------------------------------
    def phase(self, epoch: int) -> QuantizationPhase:
        """The modes epoch ``epoch`` trains with (pure: depends on the arguments only)."""
        return QuantizationPhase(
            synapses=epoch >= self.float_epochs,
            neurons=epoch >= self.neuron_epoch,
            frozen=self.freeze_epoch is not None and epoch >= self.freeze_epoch,
        )

    # ---- hooks ------------------------------------------------------------------------------
    def on_epoch_start(self, net: nn.Module, epoch: int) -> None:
        from ..qat import calibrate, freeze_calibration

        phase = self.phase(epoch)
        apply_phase(net, phase)
        calibrated = False
        if self.recalibrate and (phase.synapses or phase.neurons) and self.frozen_at is None:
            calibrate(net)
            calibrated = True
        if phase.frozen and self.frozen_at is None:
            freeze_calibration(net)
            self.frozen_at = epoch
        self.history.append({"epoch": epoch, **asdict(phase), "calibrated": calibrated})

    def log_dict(self) -> dict[str, float]:
        if not self.history:
            return {}
        last = self.history[-1]
        return {f"qat/{key}": float(last[key]) for key in ("synapses", "neurons", "frozen")}

    def state_dict(self) -> dict[str, Any]:
        return {"frozen_at": self.frozen_at, "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.frozen_at = state["frozen_at"]
        self.history = [dict(h) for h in state["history"]]


def apply_phase(net: nn.Module, phase: QuantizationPhase) -> None:
    """Set every synapse and neuron of ``net`` to ``phase``'s mode with the public toggles.

    Neurons are set first, then synapses, so that a neuron holding a recurrent synapse (RLeaky)
    cannot override its synapse's mode.
    """
    from ..nn import disable_quantization, enable_quantization

    synapses, neurons = _quant_modules(net)
    toggle: Callable[[nn.Module], Any]
    for modules, on in ((neurons, phase.neurons), (synapses, phase.synapses)):
        toggle = enable_quantization if on else disable_quantization
        for module in modules:
            toggle(module)
