"""Training-loop callbacks for quantization-aware fine-tuning (plain loops and Lightning).

The plain callbacks follow :class:`Callback`'s four hooks; the Lightning adapters of the same
names live in :mod:`snntorch_loihi.callbacks.lightning` (imported only when used).
"""

from .base import Callback, CallbackList
from .schedule import QuantizationPhase, QuantizationSchedule

__all__ = ["Callback", "CallbackList", "QuantizationPhase", "QuantizationSchedule"]
