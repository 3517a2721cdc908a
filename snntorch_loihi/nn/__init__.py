"""Quantization-aware snnTorch layers for Loihi: neurons, synapses and the mode toggles.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from snntorch_loihi.nn import QuantAwareLeaky, QuantLinear, enable_quantization
    >>> net = nn.Sequential(QuantLinear(4, 3, bias=False), QuantAwareLeaky(0.9, init_hidden=True))
    >>> _ = net.apply(enable_quantization)
    >>> net[1].quantized
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .neurons import QuantAwareLeaky, QuantAwareRLeaky, QuantAwareSynaptic, QuantNeuronMixin
from .synapses import (
    QuantConv2d,
    QuantLinear,
    QuantOneToOne,
    QuantSumPool2d,
    QuantSynapseMixin,
)

__all__ = [
    "QuantAwareLeaky",
    "QuantAwareSynaptic",
    "QuantAwareRLeaky",
    "QuantLinear",
    "QuantConv2d",
    "QuantSumPool2d",
    "QuantOneToOne",
    "enable_quantization",
    "disable_quantization",
    "quantization",
    "is_quant_module",
]

_QUANT_TYPES = (QuantNeuronMixin, QuantSynapseMixin, QuantSumPool2d)


def is_quant_module(m: nn.Module) -> bool:
    """True for the layers of this package (they have a ``quantized`` switch)."""
    return isinstance(m, _QUANT_TYPES)


def enable_quantization(m: nn.Module) -> None:
    """Switch one module to Loihi's integer arithmetic; use as ``net.apply(enable_quantization)``."""
    if is_quant_module(m):
        m.quantized = True  # type: ignore[assignment]
        if isinstance(m, QuantNeuronMixin):
            m.__dict__["_a_prev"] = None


def disable_quantization(m: nn.Module) -> None:
    """Switch one module to float mode; use as ``net.apply(disable_quantization)``."""
    if is_quant_module(m):
        m.quantized = False  # type: ignore[assignment]
        if isinstance(m, QuantNeuronMixin):
            m.__dict__["_a_prev"] = None


@contextmanager
def quantization(net: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Run ``net`` in quantized (or float) mode inside a ``with`` block, then restore each layer.

    Example:
        >>> fc = QuantLinear(2, 2, bias=False)
        >>> with quantization(fc):
        ...     fc.quantized
        True
        >>> fc.quantized
        False
    """
    saved = {m: m.quantized for m in net.modules() if is_quant_module(m)}  # type: ignore[misc]
    net.apply(enable_quantization if enabled else disable_quantization)
    try:
        yield net
    finally:
        for m, q in saved.items():
            m.quantized = q  # type: ignore[assignment]
