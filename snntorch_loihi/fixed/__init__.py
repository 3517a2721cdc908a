"""The Loihi fixed-point core: pure tensor functions, exact with Lava's ``fixed_pt`` models."""

from .check import check_int_range, is_integral
from .network import LayerTrace, SimResult, simulate
from .neuron import (
    check_neuron_registers,
    cuba_step,
    cuba_subthreshold,
    cuba_subthreshold_ste,
    current_decay_factor,
    decay,
    decay_ste,
    effective_bias,
    fire,
    reset_zero,
    saturate_voltage,
    saturate_voltage_ste,
    voltage_decay_factor,
    wrap_current,
    wrap_current_ste,
)
from .ste import clamp_ste, floor_ste, round_ste, trunc_ste
from .synapse import (
    SignMode,
    check_weights,
    conv_accumulate,
    dense_accumulate,
    determine_sign_mode,
    shift_by_exponent,
    truncate_weights,
    weight_grid,
)

__all__ = [
    "check_int_range", "is_integral", "check_neuron_registers", "cuba_step", "cuba_subthreshold",
    "cuba_subthreshold_ste", "current_decay_factor", "decay", "decay_ste", "effective_bias",
    "fire", "reset_zero", "saturate_voltage", "saturate_voltage_ste", "voltage_decay_factor",
    "wrap_current", "wrap_current_ste", "clamp_ste", "floor_ste", "round_ste", "trunc_ste",
    "SignMode", "check_weights", "conv_accumulate", "dense_accumulate", "determine_sign_mode",
    "shift_by_exponent", "truncate_weights", "weight_grid",
    "LayerTrace", "SimResult", "simulate",
]
