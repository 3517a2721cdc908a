"""snntorch-loihi: make Loihi 2 behave exactly like training.

The public API, imported lazily (Lava and the exporters load only when used)::

    import snntorch_loihi as sl
    qnet = sl.prepare_qat(net)            # quantization-aware copy of a trained snnTorch net
    graph = sl.export(qnet, sample)       # NIR graph carrying Loihi's integer registers
    report = sl.verify(qnet, inputs)      # torch forward vs Lava's bit-accurate simulation
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # hardware facts and the network description
    "LOIHI": "snntorch_loihi.spec",
    "LoihiSpec": "snntorch_loihi.spec",
    "LoihiNetwork": "snntorch_loihi.ir",
    # quantization-aware layers
    "QuantAwareLeaky": "snntorch_loihi.nn",
    "QuantAwareSynaptic": "snntorch_loihi.nn",
    "QuantAwareRLeaky": "snntorch_loihi.nn",
    "QuantLinear": "snntorch_loihi.nn",
    "QuantConv2d": "snntorch_loihi.nn",
    "QuantSumPool2d": "snntorch_loihi.nn",
    "enable_quantization": "snntorch_loihi.nn",
    "disable_quantization": "snntorch_loihi.nn",
    "prepare_qat": "snntorch_loihi.qat",
    "calibrate": "snntorch_loihi.qat",
    "freeze_calibration": "snntorch_loihi.qat",
    "delay_steps": "snntorch_loihi.qat",
    # NIR
    "export": "snntorch_loihi.export",
    "from_nir": "snntorch_loihi.export",
    # Lava
    "to_lava": "snntorch_loihi.lava.convert",
    "save_netx": "snntorch_loihi.lava.netx",
    "verify": "snntorch_loihi.verify",
    "ParityReport": "snntorch_loihi.verify",
    # training-loop callbacks (Lightning adapters: snntorch_loihi.callbacks.lightning)
    "Callback": "snntorch_loihi.callbacks",
    "CallbackList": "snntorch_loihi.callbacks",
    "QuantizationSchedule": "snntorch_loihi.callbacks",
    "OverflowMonitor": "snntorch_loihi.callbacks",
    "ParityCheck": "snntorch_loihi.callbacks",
    "ExportBest": "snntorch_loihi.callbacks",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

# ``export`` and ``verify`` share their names with subpackages: once a submodule such as
# ``snntorch_loihi.export.api`` is imported, Python would bind the package attribute to the
# subpackage. Binding the functions eagerly here (neither subpackage imports Lava) keeps
# ``snntorch_loihi.export`` / ``snntorch_loihi.verify`` the functions in every import order.
from .export import export, from_nir  # noqa: E402, F401
from .verify import ParityReport, verify  # noqa: E402, F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'snntorch_loihi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
