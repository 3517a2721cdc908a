"""Exception and warning types of snntorch-loihi.

Messages follow one template: ``<Thing> '<path>': <param> must be <constraint>, got <value>.
<hint>``.
"""

from __future__ import annotations

__all__ = [
    "LoihiError",
    "RegisterRangeError",
    "UnsupportedModuleError",
    "QuantizationWarning",
    "SemanticsChangeWarning",
    "LavaUnavailableError",
]


class LoihiError(Exception):
    """Base class of the package's errors."""


class RegisterRangeError(LoihiError, ValueError):
    """A value does not fit a Loihi register or a hardware range."""


class UnsupportedModuleError(LoihiError, TypeError):
    """A module cannot run on Loihi (or is not supported by the converter)."""


class LavaUnavailableError(LoihiError, ImportError):
    """Lava (lava-nc / lava-dl) is needed but cannot be imported."""


class QuantizationWarning(UserWarning):
    """A parameter changed when it was put on Loihi's integer grid."""


class SemanticsChangeWarning(UserWarning):
    """A neuron's behaviour changes on Loihi (reset mechanism, reset delay, bias placement)."""
