"""Loihi 2 register widths, shifts and offsets as one frozen dataclass.

Every hardware number the package uses comes from :data:`LOIHI`; no other module spells out
4096, 131071 or the shift by 6. The values are those of Lava's bit-accurate CPU models
(``lava/proc/lif/models.py::AbstractPyLifModelFixed``, ``lava/proc/dense/models.py``,
``lava/utils/weightutils.py``), which document the hardware ranges of Loihi.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LoihiSpec", "LOIHI", "SIGN_MODES"]

#: Lava's ``SignMode`` enum values (``lava.utils.weightutils.SignMode``).
SIGN_MODES = {"mixed": 1, "excitatory": 2, "inhibitory": 3}


@dataclass(frozen=True)
class LoihiSpec:
    """Bit widths and shifts of a Loihi 2 CUBA-LIF neuron and its synapses.

    Example:
        >>> from snntorch_loihi.spec import LOIHI
        >>> LOIHI.decay_unity, LOIHI.vth_max, LOIHI.state_max
        (4096, 131071, 8388608)
    """

    decay_shift: int = 12
    """Decays are 12-bit fractions of ``2**decay_shift``."""
    decay_bits: int = 12
    """Width of ``du`` and ``dv`` (unsigned)."""
    du_offset: int = 1
    """Lava adds 1 to ``du`` (``ds_offset``): the current decays by ``(du + 1) / 4096``."""
    dv_offset: int = 0
    """Lava adds 0 to ``dv`` (``dm_offset``)."""
    act_shift: int = 6
    """Synaptic input is shifted left by 6 before it is added to the current ``u``."""
    vth_shift: int = 6
    """The threshold mantissa is shifted left by 6: spikes when ``v > vth << 6``."""
    state_bits: int = 24
    """Width of ``u`` and ``v`` (signed). ``u`` wraps, ``v`` saturates."""
    vth_bits: int = 17
    """Width of the threshold mantissa (unsigned)."""
    bias_mant_bits: int = 13
    """Width of the bias mantissa (signed)."""
    bias_exp_bits: int = 3
    """Width of the bias exponent (unsigned): the bias is ``bias_mant << bias_exp``."""
    weight_bits: int = 8
    """Width of a weight mantissa (signed, mixed sign mode drops its LSB)."""
    weight_exp_min: int = -8
    """Smallest per-layer weight exponent."""
    weight_exp_max: int = 7
    """Largest per-layer weight exponent."""
    netx_bias_exp: int = 6
    """lava-dl netx writes every bias with ``bias_exp = 6``; calibration prefers exponents >= 6."""

    # ---- derived values -------------------------------------------------------------------
    @property
    def decay_unity(self) -> int:
        """``2**decay_shift`` (4096): a decay of 0 keeps the whole state."""
        return 1 << self.decay_shift

    @property
    def decay_max(self) -> int:
        """Largest ``du`` / ``dv`` register value (4095)."""
        return (1 << self.decay_bits) - 1

    @property
    def state_max(self) -> int:
        """``2**(state_bits - 1)``: ``u`` lives in ``(-state_max, state_max]`` after its wrap."""
        return 1 << (self.state_bits - 1)

    @property
    def state_modulus(self) -> int:
        """``2**state_bits``: the modulus of the current's wrap."""
        return 1 << self.state_bits

    @property
    def v_max(self) -> int:
        """``v`` saturates to ``[-v_max, v_max]`` with ``v_max = 2**23 - 1``."""
        return self.state_max - 1

    @property
    def vth_max(self) -> int:
        """Largest threshold mantissa (131071)."""
        return (1 << self.vth_bits) - 1

    @property
    def bias_mant_min(self) -> int:
        return -(1 << (self.bias_mant_bits - 1))

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def bias_exp_max(self) -> int:
        return (1 << self.bias_exp_bits) - 1

    @property
    def weight_min(self) -> int:
        """Smallest weight mantissa (-256, mixed sign mode)."""
        return -(1 << self.weight_bits)

    @property
    def weight_max(self) -> int:
        """Largest weight mantissa (255)."""
        return (1 << self.weight_bits) - 1

    @property
    def a_in_max(self) -> int:
        """Largest ``|a_in|`` for which Lava's one-step wrap of ``u`` equals a modular wrap.

        Lava adds ``a_in << 6`` to the decayed current and then subtracts or adds ``2**24`` once;
        that lands inside 24 bits (as on the chip) whenever ``|a_in << 6| < 2**24``.
        """
        return (1 << (self.state_bits - self.act_shift)) - 1

    @property
    def float32_exact(self) -> int:
        """Integers up to ``2**24`` are exact in float32."""
        return 1 << 24


LOIHI = LoihiSpec()
