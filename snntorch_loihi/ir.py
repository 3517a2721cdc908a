"""The Loihi network as plain data: what every backend (torch reference, Lava, netx, NIR) runs.

A :class:`LoihiNetwork` is a feed-forward chain of :class:`LoihiLayer` s. Each layer is one
synapse (Dense or Conv) feeding one population of CUBA-LIF neurons, optionally with a recurrent
Dense from the population onto itself. Flatten and sum pooling between a population and the next
synapse are folded into that synapse (they are linear maps of spikes). All registers are integers
exactly as Lava's ``fixed_pt`` processes take them, except that:

- tensors are in **PyTorch layout** (``(C, H, W)``, conv weights ``(C_out, C_in/groups, kH, kW)``
  as a cross-correlation; the Lava builder flips and transposes them);
- a Dense synapse's ``weight_mant`` are the mantissas as given to Lava's ``Dense(weights=...)``
  together with ``sign_mode`` (passed explicitly, so Lava does not re-derive it) — they must be
  fixed points of :func:`snntorch_loihi.fixed.truncate_weights`;
- ``scale_exp`` records the float correspondence: a float state or threshold equals its integer
  value times ``2**-scale_exp`` (``v_float = v * 2**-scale_exp``, threshold
  ``= (vth << 6) * 2**-scale_exp``, a weight ``= weight_mant * 2**(weight_exp + 6 - scale_exp)``,
  a bias ``= bias_mant * 2**(bias_exp - scale_exp)``).

Timing is Lava's: every synapse delays by one step; layer ``k`` (1-based) first sees the input
of step 0 at step ``k - 1 + 1 = k``; biases integrate from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import RegisterRangeError
from .spec import LOIHI, LoihiSpec

__all__ = ["LoihiSynapse", "LoihiNeuron", "LoihiLayer", "LoihiNetwork"]

Pair = tuple[int, int]


@dataclass(frozen=True)
class LoihiSynapse:
    """A Dense or Conv synapse with Loihi's integer weights.

    Attributes:
        kind: ``"dense"`` or ``"conv"``.
        weight_mant: int64 array. Dense ``(out, in)`` on the flattened input (PyTorch C-order);
            Conv ``(C_out, C_in/groups, kH, kW)``, cross-correlation (PyTorch's ``conv2d``).
        weight_exp: per-layer exponent in ``[-8, 7]`` applied to the sum; 0 for Conv (Lava's Conv
            ignores it).
        num_weight_bits: Lava's ``num_weight_bits`` (Dense only; 1..8).
        sign_mode: ``"mixed"``, ``"excitatory"`` or ``"inhibitory"`` (Lava's ``SignMode``).
        in_shape, out_shape: shapes without batch, PyTorch layout.
        num_message_bits: 0 for binary spikes; >0 for graded (integer payload) input.
        stride, padding, dilation, groups: Conv geometry (PyTorch semantics).
    """

    kind: Literal["dense", "conv"]
    weight_mant: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: Literal["mixed", "excitatory", "inhibitory"] = "mixed"
    num_message_bits: int = 0
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    def validate(self, where: str = "synapse", spec: LoihiSpec = LOIHI) -> None:
        """Raise :class:`RegisterRangeError` for anything outside the hardware ranges."""
        w = np.asarray(self.weight_mant)
        if w.size and (w.min() < spec.weight_min or w.max() > spec.weight_max):
            bad = w.min() if w.min() < spec.weight_min else w.max()
            raise RegisterRangeError(
                f"{where}: weight_mant must be in [{spec.weight_min}, {spec.weight_max}], got {bad}."
            )
        if not spec.weight_exp_min <= self.weight_exp <= spec.weight_exp_max:
            raise RegisterRangeError(
                f"{where}: weight_exp must be in [{spec.weight_exp_min}, {spec.weight_exp_max}], "
                f"got {self.weight_exp}."
            )
        if self.kind == "conv" and self.weight_exp != 0:
            raise RegisterRangeError(
                f"{where}: weight_exp must be 0 for a conv synapse (Lava's Conv ignores it), "
                f"got {self.weight_exp}."
            )


@dataclass(frozen=True)
class LoihiNeuron:
    """A population of Loihi CUBA-LIF neurons (``lava.proc.lif.process.LIF``).

    Attributes:
        shape: population shape without batch, PyTorch layout.
        du, dv: decay registers (``du = 4095``: no current memory, a Leaky neuron).
        vth: threshold mantissa (spikes when ``v > vth << 6``).
        bias_mant, bias_exp: int64 arrays of ``shape`` (or broadcastable).
        scale_exp: float value of an integer state = ``state * 2**-scale_exp``.
        reset: ``"zero"`` (Loihi) or ``"none"`` (a membrane readout; same hardware, documented).
    """

    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray = field(default_factory=lambda: np.zeros((), np.int64))
    bias_exp: np.ndarray = field(default_factory=lambda: np.zeros((), np.int64))
    scale_exp: int = 0
    reset: Literal["zero", "none"] = "zero"

    def validate(self, where: str = "neuron", spec: LoihiSpec = LOIHI) -> None:
        """Raise :class:`RegisterRangeError` for anything outside the hardware ranges."""
        checks = [
            ("du", np.asarray(self.du), 0, spec.decay_max),
            ("dv", np.asarray(self.dv), 0, spec.decay_max),
            ("vth", np.asarray(self.vth), 0, spec.vth_max),
            ("bias_mant", np.asarray(self.bias_mant), spec.bias_mant_min, spec.bias_mant_max),
            ("bias_exp", np.asarray(self.bias_exp), 0, spec.bias_exp_max),
        ]
        for name, a, lo, hi in checks:
            if a.size and (a.min() < lo or a.max() > hi):
                bad = a.min() if a.min() < lo else a.max()
                raise RegisterRangeError(f"{where}: {name} must be in [{lo}, {hi}], got {bad}.")


@dataclass(frozen=True)
class LoihiLayer:
    """One synapse into one neuron population, with an optional recurrent Dense."""

    name: str
    synapse: LoihiSynapse
    neuron: LoihiNeuron
    recurrent: LoihiSynapse | None = None


@dataclass(frozen=True)
class LoihiNetwork:
    """A feed-forward chain of :class:`LoihiLayer`; ``input_shape`` excludes batch and time."""

    input_shape: tuple[int, ...]
    layers: tuple[LoihiLayer, ...]

    @property
    def delay(self) -> int:
        """Steps from an input column to the last layer's response to it (one per synapse)."""
        return len(self.layers)

    def validate(self) -> None:
        """Check every register and that shapes chain."""
        shape = tuple(self.input_shape)
        for layer in self.layers:
            layer.synapse.validate(f"layer '{layer.name}' synapse")
            layer.neuron.validate(f"layer '{layer.name}' neuron")
            if layer.recurrent is not None:
                layer.recurrent.validate(f"layer '{layer.name}' recurrent synapse")
            if int(np.prod(layer.synapse.in_shape)) != int(np.prod(shape)):
                raise RegisterRangeError(
                    f"layer '{layer.name}': synapse input size must match the previous output "
                    f"{shape}, got {layer.synapse.in_shape}."
                )
            shape = tuple(layer.neuron.shape)
