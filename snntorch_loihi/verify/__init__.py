"""Parity of the training-side model and Lava's bit-accurate simulation, as a report.

:func:`verify` runs the same inputs through the quantization-aware torch forward (or
:func:`~snntorch_loihi.fixed.simulate` for a Loihi network / NIR graph) and through Lava
(processes or lava-dl netx), and returns a :class:`ParityReport`: per layer spike counts,
mismatches, the first diverging step, the largest ``u``/``v`` differences, wraps and
saturations, float drift, and ``exact``.
"""

from .parity import record_torch, verify
from .report import LayerParity, ParityReport, compare_layer

__all__ = ["verify", "record_torch", "ParityReport", "LayerParity", "compare_layer"]
