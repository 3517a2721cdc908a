"""Quantization-aware snnTorch neurons: ``QuantAwareLeaky``, ``QuantAwareSynaptic``, ``QuantAwareRLeaky``.

Each class subclasses its snnTorch parent (same constructor arguments, ``init_hidden``,
``output``, ``snntorch.utils.reset``, ``learn_*``, ``spike_grad``, ``surrogate_disable``) and has
two modes, toggled with :func:`enable_quantization` / :func:`disable_quantization`:

**Float mode** (default): snnTorch's float dynamics with Loihi's reset, i.e. the parent with
``reset_mechanism="zero", reset_delay=False`` (spike for spike identical), plus an optional
per-neuron ``bias`` (float units) added every step.

**Quantized mode**: Lava's bit-accurate CUBA-LIF (``PyLifModelBitAcc``) with ``k = scale_exp``::

    a      = a_in of the previous step (Lava's one-step synaptic delay; 0 at the first step)
    u      = wrap24(rs0(u * (4096 - (du + 1))) + ((a + a_rec) << 6))   # a_rec: W_rec @ s[t-1]
    v      = sat24(rs0(v * (4096 - dv)) + u + (bias_mant << bias_exp))
    spk    = spike_grad((v - (vth << 6)) * 2**-k)       # strict v > vth << 6; snnTorch surrogate
    v      = 0 where spk                                # reset="zero"; nothing for "none"
    mem    = v * 2**-k,  syn = u * 2**-k                # returned in float units (exact)

``du``, ``dv``, ``vth``, ``bias`` come from the float parameters through straight-through
rounding (:mod:`snntorch_loihi.nn._quant`), so ``learn_beta`` / ``learn_alpha`` /
``learn_threshold`` / bias train through the quantizers. Leaky and RLeaky have ``du = 4095``.

``reset_mechanism="none"`` is a membrane readout: float mode is snnTorch's ``"none"``; on Loihi
``vth`` is set to its register maximum (131071, i.e. ``v > 8388544``), so the population only
spikes within 63 of ``v``'s saturation and, as long as it does not, Lava's LIF (which always
resets) and this layer agree; read ``mem`` (``v``) as the output. Quantized mode applies no
reset, like :func:`snntorch_loihi.fixed.network.simulate`.

The synaptic delay lives in the neuron (it holds the ``a_in`` received at the previous step) so
that every way snnTorch resets hidden state (``snntorch.utils.reset``, ``init_leaky()``,
``reset_mem()``, assigning ``mem``) also clears it. Hidden states are stored in float units
(``mem = v * 2**-k``), which is exact.
"""

from __future__ import annotations

from typing import Any

import snntorch as snn
import torch
from torch import nn

from ..errors import RegisterRangeError, UnsupportedModuleError
from ..fixed import (
    check_neuron_registers,
    decay_ste,
    saturate_voltage_ste,
    wrap_current_ste,
)
from ..spec import LOIHI
from ._kernels import leaky_subthreshold, quant_ste, synaptic_subthreshold
from ._quant import quantize_bias, quantize_du, quantize_dv, quantize_vth
from .synapses import QuantLinear, QuantOneToOne, module_state

__all__ = ["QuantAwareLeaky", "QuantAwareSynaptic", "QuantAwareRLeaky", "QuantNeuronMixin"]

_UNITY = float(LOIHI.decay_unity)
_ACT = float(1 << LOIHI.act_shift)
_VTH = float(1 << LOIHI.vth_shift)


def _check_options(cls: str, reset_mechanism: str, reset_delay: bool, inhibition: bool,
                   state_quant: Any) -> None:
    if reset_mechanism == "subtract":
        raise ValueError(
            f"{cls}: reset_mechanism must be 'zero' or 'none', got 'subtract'. Loihi resets the "
            f"membrane to zero in the step of the spike; train with reset_mechanism='zero' "
            f"(prepare_qat converts a subtract-reset network and warns)."
        )
    if reset_mechanism not in ("zero", "none"):
        raise ValueError(
            f"{cls}: reset_mechanism must be 'zero' or 'none', got {reset_mechanism!r}."
        )
    if reset_delay:
        raise ValueError(
            f"{cls}: reset_delay must be False, got True. Loihi resets in the step of the spike."
        )
    if inhibition:
        raise UnsupportedModuleError(f"{cls}: inhibition must be False on Loihi, got True.")
    if state_quant:
        raise UnsupportedModuleError(
            f"{cls}: state_quant must be False (quantized mode already uses Loihi's integer "
            f"states), got {state_quant!r}."
        )


class QuantNeuronMixin:
    """Quantization state and helpers shared by the QuantAware neurons."""

    _state_names: tuple[str, ...] = ()
    _has_current: bool = False
    reference: bool = False
    """Use the fixed core's STE functions step by step instead of the fused kernels (tests)."""
    beta: torch.Tensor
    threshold: torch.Tensor
    bias: nn.Parameter | None
    reset_mechanism: str

    def _init_quant(self, bias: torch.Tensor | None, scale_exp: int) -> None:
        self.quantized = False
        self.calibration_frozen = False
        self.path = ""
        self._scale_exp = int(scale_exp)
        self._a_prev: torch.Tensor | None = None
        self.feeders: list[nn.Module] = []
        if bias is None:
            self.bias = None
            self.register_buffer("bias_exp", None)  # type: ignore[attr-defined]
        else:
            b = torch.as_tensor(bias, dtype=torch.get_default_dtype())
            self.bias = nn.Parameter(b.clone())
            self.register_buffer("bias_exp", torch.zeros(b.shape, dtype=torch.int64))  # type: ignore[attr-defined]

    # ---- state handling ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self)._state_names:  # an external reset / state assignment
            self.__dict__["_a_prev"] = None
        super().__setattr__(name, value)  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        return module_state(self)  # type: ignore[arg-type]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        snn.SpikingNeuron.instances.append(self)  # copies must be reset by snntorch.utils.reset

    def _put(self, name: str, value: torch.Tensor) -> None:
        self._buffers[name] = value  # type: ignore[attr-defined]

    def _delayed(self, a_new: torch.Tensor) -> torch.Tensor:
        prev = self.__dict__.get("_a_prev")
        self.__dict__["_a_prev"] = a_new
        if prev is None or prev.shape != a_new.shape:
            return torch.zeros_like(a_new)
        return prev

    # ---- registers -----------------------------------------------------------------------
    @property
    def scale_exp(self) -> int:
        """Float value of an integer state = ``state * 2**-scale_exp``."""
        return self._scale_exp

    @scale_exp.setter
    def scale_exp(self, k: int) -> None:
        self._scale_exp = int(k)

    def _du_q(self) -> torch.Tensor | float:
        return float(LOIHI.decay_max)

    def _vth_q(self) -> torch.Tensor:
        if self.reset_mechanism == "none":
            return torch.full_like(self.threshold, float(LOIHI.vth_max))
        return quantize_vth(self.threshold, self._scale_exp)

    def _bias_q(self) -> torch.Tensor | float:
        if self.bias is None:
            return 0.0
        return quantize_bias(self.bias, self._scale_exp, self.bias_exp)  # type: ignore[attr-defined]

    def _qparams(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor,
                                torch.Tensor | None]:
        """``(4096 - dv, 4096 - (du + 1), (vth << 6) * 2**-k, bias_mant << bias_exp)``.

        Cached until a parameter changes (optimizer step, ``load_registers``, ``.to()``), so a
        training step quantizes each parameter once, not once per time step.
        """
        alpha = getattr(self, "alpha", None) if self._has_current else None
        params = (self.beta, self.threshold, alpha, self.bias, self.bias_exp)  # type: ignore[attr-defined]
        key = (self._scale_exp, self.reset_mechanism, torch.is_grad_enabled(),
               tuple(None if p is None else (p.data_ptr(), p._version, p.dtype) for p in params))
        cache = self.__dict__.get("_qcache")
        if cache is not None and cache[0] == key:
            return cache[1]
        k, unity = self._scale_exp, float(LOIHI.decay_unity)
        fv = quant_ste(self.beta, unity, 1, unity)
        fu = None if alpha is None else quant_ste(alpha, unity, 0, float(LOIHI.decay_max))
        if self.reset_mechanism == "none":
            vth_f = torch.full_like(self.threshold.detach(), LOIHI.vth_max * _VTH * 2.0**-k)
        else:
            vth_f = quant_ste(self.threshold, 2.0 ** (k - LOIHI.vth_shift), 0,
                              float(LOIHI.vth_max), _VTH * 2.0**-k)
        bias = None
        if self.bias is not None:
            sc = torch.exp2(self.bias_exp.to(self.bias.dtype))  # type: ignore[attr-defined]
            bias = quant_ste(self.bias, 2.0**k / sc, float(LOIHI.bias_mant_min),
                             float(LOIHI.bias_mant_max), sc)
        val = (fv, fu, vth_f, bias)
        self.__dict__["_qcache"] = (key, val)
        return val

    def _single(self, t: torch.Tensor, name: str) -> int:
        flat = t.detach().reshape(-1)
        if flat.numel() > 1 and not bool((flat == flat[0]).all()):
            raise RegisterRangeError(
                f"{type(self).__name__} '{self.path}': {name} must be one value per population "
                f"on Loihi, got {flat.numel()} different values."
            )
        return int(flat[0].item())

    def registers(self) -> dict[str, Any]:
        """The Loihi registers, exactly the values the quantized forward uses.

        Returns:
            ``dict(du=int, dv=int, vth=int, bias_mant=LongTensor, bias_exp=LongTensor,
            scale_exp=int, reset=str)``.
        """
        with torch.no_grad():
            fv, fu, vth_f, eff = self._qparams()
            du = LOIHI.decay_max if fu is None else self._single(LOIHI.decay_max - fu, "du")
            dv = self._single(LOIHI.decay_unity - fv, "dv")
            vth = self._single(vth_f * 2.0**self._scale_exp / _VTH, "vth")
            if eff is None:
                mant = torch.zeros((), dtype=torch.int64)
                exp = torch.zeros((), dtype=torch.int64)
            else:
                exp = self.bias_exp.detach().clone()  # type: ignore[attr-defined]
                mant = (eff / torch.exp2(exp.to(eff.dtype))).to(torch.int64)
        return dict(du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=exp,
                    scale_exp=self._scale_exp, reset=self.reset_mechanism)

    def load_registers(
        self, du: int, dv: int, vth: int, bias_mant: torch.Tensor | None = None,
        bias_exp: torch.Tensor | None = None, scale_exp: int | None = None,
    ) -> None:
        """Set the float parameters so that :meth:`registers` returns exactly these values.

        ``beta = 1 - dv / 4096``, ``alpha = 1 - (du + 1) / 4096``, ``threshold = vth * 2**(6 - k)``,
        ``bias = bias_mant * 2**(bias_exp - k)`` (all exact in float32). Freezes calibration.
        """
        where = f"{type(self).__name__} '{self.path}'"
        bm = torch.zeros(()) if bias_mant is None else torch.as_tensor(bias_mant)
        be = torch.zeros((), dtype=torch.int64) if bias_exp is None else torch.as_tensor(bias_exp)
        check_neuron_registers(du, dv, vth, bm, be, where=where)
        if not self._has_current and du != LOIHI.decay_max:
            raise RegisterRangeError(
                f"{where}: du must be {LOIHI.decay_max} for a neuron without synaptic current, "
                f"got {du}. Use QuantAwareSynaptic for du < {LOIHI.decay_max}."
            )
        if scale_exp is not None:
            self.scale_exp = scale_exp
        k = self._scale_exp
        with torch.no_grad():
            self.beta.copy_(torch.full_like(self.beta, 1 - dv / _UNITY))
            if self._has_current:
                alpha = self.alpha  # type: ignore[attr-defined]
                alpha.copy_(torch.full_like(alpha, 1 - (du + 1) / _UNITY))
            if self.reset_mechanism != "none":
                self.threshold.copy_(torch.full_like(self.threshold, vth * 2.0 ** (6 - k)))
            if bias_mant is not None:
                be = be.to(torch.int64).expand(bm.shape).clone() if be.dim() == 0 else be
                val = bm.to(torch.get_default_dtype()) * torch.exp2(be.to(torch.get_default_dtype()) - k)
                dev = self.beta.device
                if self.bias is None:
                    self.bias = nn.Parameter(val.to(dev))
                else:
                    self.bias.copy_(val)
                self._buffers["bias_exp"] = be.to(dev)  # type: ignore[attr-defined]
        self.calibration_frozen = True

    def _needs_wrap(self) -> bool:
        """False when the feeding synapses cannot deliver ``|a_in << 6| > 2**23``."""
        if not self.feeders:
            return True
        syns = list(self.feeders)
        rec = getattr(self, "recurrent", None)
        if isinstance(rec, (QuantLinear, QuantOneToOne)):
            syns.append(rec)
        bound = sum(s.input_bound() for s in syns)  # type: ignore[operator]
        return bound * _ACT > LOIHI.state_max

    def _float_input(self, x: torch.Tensor, synapses: list[nn.Module] | None = None) -> torch.Tensor:
        """Float-mode input: a quantized synapse delivers integer ``a_in``; in float units that is
        ``a_in * 2**(6 - k)`` (exact). Lets weights be quantized before the neuron (staged QAT)."""
        if any(getattr(s, "quantized", False) for s in (self.feeders if synapses is None else synapses)):
            return x * 2.0 ** (LOIHI.act_shift - self._scale_exp)
        return x

    def _quant_input(self, input_: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        k = self._scale_exp
        return self._delayed(input_), 2.0**k, 2.0**-k

    def _spike_reset(self, mem: torch.Tensor, vth_f: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spike on ``mem - threshold`` in float units (exact: both are multiples of
        ``2**-k``), then reset to zero."""
        spk = self.spike_grad(mem - vth_f)  # type: ignore[attr-defined]
        if self.reset_mechanism == "zero":
            mem = torch.addcmul(mem, spk, mem, value=-1)
        return spk, mem

    def _leaky_quant_step(self, a: torch.Tensor, scale: float, inv: float
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantized step of a neuron without current memory (``du = 4095``): ``(spk, mem)``."""
        if self.reference:  # type: ignore[attr-defined]
            v = decay_ste(self.mem * scale, _UNITY - quantize_dv(self.beta))  # type: ignore[attr-defined]
            v = saturate_voltage_ste(v + wrap_current_ste(a * _ACT) + self._bias_q())
            return self._spike_reset_ref(v, inv)
        fv, _, vth_f, b = self._qparams()  # type: ignore[attr-defined]
        v = leaky_subthreshold(self.mem, a, fv, b, scale, self._needs_wrap())  # type: ignore[attr-defined]
        return self._spike_reset(v, vth_f)

    def _spike_reset_ref(self, v: torch.Tensor, inv: float) -> tuple[torch.Tensor, torch.Tensor]:
        return self._spike_reset(v * inv, self._vth_q() * (_VTH * inv))

    def _float_reset(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spk = self.fire(mem)  # type: ignore[attr-defined]
        if self.reset_mechanism == "zero":
            mem = mem - (spk / self.graded_spikes_factor) * mem  # type: ignore[attr-defined]
        return spk, mem

    def _extra(self) -> str:
        return (f"quantized={self.quantized}, scale_exp={self._scale_exp}, "
                f"reset={self.reset_mechanism!r}, bias={self.bias is not None}")

    def get_extra_state(self) -> dict[str, Any]:
        return dict(scale_exp=self._scale_exp, quantized=self.quantized,
                    frozen=self.calibration_frozen)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._scale_exp, self.quantized = state["scale_exp"], state["quantized"]
        self.calibration_frozen = state["frozen"]


class QuantAwareLeaky(QuantNeuronMixin, snn.Leaky):
    """``snn.Leaky`` with Loihi's zero reset and an integer (quantized) mode.

    Args:
        beta, threshold, spike_grad, ...: as ``snn.Leaky``.
        reset_mechanism: ``"zero"`` (Loihi) or ``"none"`` (a membrane readout).
        bias: optional per-neuron bias in float units, added to ``mem`` every step.
        scale_exp: power-of-two scale ``k`` of the integer states (set by calibration).

    Example:
        >>> lif = QuantAwareLeaky(beta=0.5, threshold=1.0, init_hidden=True)
        >>> lif.load_registers(du=4095, dv=2048, vth=4, scale_exp=8)   # vth << 6 = 256 = 1.0
        >>> lif.quantized = True
        >>> [lif(torch.tensor([300.])).item() for _ in range(3)]  # a_in arrives one step late
        [0.0, 1.0, 1.0]
    """

    _state_names = ("mem",)

    def __init__(self, beta: float | torch.Tensor, threshold: float | torch.Tensor = 1.0,
                 spike_grad: Any = None, surrogate_disable: bool = False,
                 init_hidden: bool = False, inhibition: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, reset_mechanism: str = "zero",
                 state_quant: Any = False, output: bool = False,
                 graded_spikes_factor: float = 1.0, learn_graded_spikes_factor: bool = False,
                 reset_delay: bool = False, *, bias: torch.Tensor | None = None,
                 scale_exp: int = 0) -> None:
        _check_options(type(self).__name__, reset_mechanism, reset_delay, inhibition,
                       state_quant)
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden,
                         inhibition, learn_beta, learn_threshold, reset_mechanism, state_quant,
                         output, graded_spikes_factor, learn_graded_spikes_factor, reset_delay)
        self._init_quant(bias, scale_exp)

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> Any:
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None:
            self._put("mem", mem)
        if self.mem.shape != input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        if not self.quantized:
            new = self.beta.clamp(0, 1) * self.mem + self._float_input(input_)
            if self.bias is not None:
                new = new + self.bias
            spk, new = self._float_reset(new)
        else:
            a, scale, inv = self._quant_input(input_)
            spk, new = self._leaky_quant_step(a, scale, inv)
        self._put("mem", new)
        if self.output or not self.init_hidden:
            return spk, new
        return spk

    def extra_repr(self) -> str:
        return self._extra()


class QuantAwareSynaptic(QuantNeuronMixin, snn.Synaptic):
    """``snn.Synaptic`` with Loihi's zero reset and an integer (quantized) mode.

    ``syn`` is Loihi's current ``u`` (not reset by a spike), ``mem`` its voltage ``v``. The bias
    is added to ``mem`` (Loihi adds it to ``v``), not to ``syn``.

    Example:
        >>> lif = QuantAwareSynaptic(alpha=0.5, beta=0.5)
        >>> lif.load_registers(du=2047, dv=2048, vth=4, scale_exp=8)
        >>> lif.quantized = True
        >>> syn, mem = lif.init_synaptic()
        >>> for _ in range(3):   # a_in = 3 arrives one step late; u is not reset by the spike
        ...     spk, syn, mem = lif(torch.tensor([3.]), syn, mem)
        ...     print(spk.item(), syn.item(), mem.item())
        0.0 0.0 0.0
        0.0 0.75 0.75
        1.0 1.125 0.0
    """

    _state_names = ("syn", "mem")
    _has_current = True

    def __init__(self, alpha: float | torch.Tensor, beta: float | torch.Tensor,
                 threshold: float | torch.Tensor = 1.0, spike_grad: Any = None,
                 surrogate_disable: bool = False, init_hidden: bool = False,
                 inhibition: bool = False, learn_alpha: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, reset_mechanism: str = "zero",
                 state_quant: Any = False, output: bool = False, reset_delay: bool = False, *,
                 bias: torch.Tensor | None = None, scale_exp: int = 0) -> None:
        _check_options(type(self).__name__, reset_mechanism, reset_delay, inhibition,
                       state_quant)
        super().__init__(alpha, beta, threshold, spike_grad, surrogate_disable, init_hidden,
                         inhibition, learn_alpha, learn_beta, learn_threshold, reset_mechanism,
                         state_quant, output, reset_delay)
        self._init_quant(bias, scale_exp)

    def _du_q(self) -> torch.Tensor:
        return quantize_du(self.alpha)

    def forward(self, input_: torch.Tensor, syn: torch.Tensor | None = None,
                mem: torch.Tensor | None = None) -> Any:
        if self.init_hidden and (mem is not None or syn is not None):
            raise TypeError(
                "`mem` or `syn` should not be passed as an argument while `init_hidden=True`")
        if syn is not None:
            self._put("syn", syn)
        if mem is not None:
            self._put("mem", mem)
        if self.syn.shape != input_.shape:
            self.syn = torch.zeros_like(input_, device=self.syn.device)
        if self.mem.shape != input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        if not self.quantized:
            new_syn = self.alpha.clamp(0, 1) * self.syn + self._float_input(input_)
            new = self.beta.clamp(0, 1) * self.mem + new_syn
            if self.bias is not None:
                new = new + self.bias
            spk, new = self._float_reset(new)
        else:
            a, scale, inv = self._quant_input(input_)
            if self.reference:
                u = decay_ste(self.syn * scale, _UNITY - 1 - quantize_du(self.alpha))
                u = wrap_current_ste(u + wrap_current_ste(a * _ACT))
                v = decay_ste(self.mem * scale, _UNITY - quantize_dv(self.beta)) + u
                v = saturate_voltage_ste(v + self._bias_q())
                spk, new = self._spike_reset_ref(v, inv)
                new_syn = u * inv
            else:
                fv, fu, vth_f, b = self._qparams()
                new_syn, m = synaptic_subthreshold(self.syn, self.mem, a, fu, fv, b, scale,
                                                   self._needs_wrap())
                spk, new = self._spike_reset(m, vth_f)
        self._put("syn", new_syn)
        self._put("mem", new)
        if self.output or not self.init_hidden:
            return spk, new_syn, new
        return spk

    def extra_repr(self) -> str:
        return self._extra()


class QuantAwareRLeaky(QuantNeuronMixin, snn.RLeaky):
    """``snn.RLeaky`` with Loihi's zero reset and an integer (quantized) mode.

    The recurrent synapse is a :class:`~snntorch_loihi.nn.QuantLinear` at ``.recurrent``
    (``all_to_all=True, linear_features=N``) or a :class:`~snntorch_loihi.nn.QuantOneToOne`
    (``all_to_all=False``); it feeds back the spikes of the previous step, without extra delay
    (Lava's recurrent Dense). Convolutional recurrence is not supported on Loihi.

    Example:
        >>> lif = QuantAwareRLeaky(beta=0.9, linear_features=4, init_hidden=True)
        >>> type(lif.recurrent).__name__
        'QuantLinear'
    """

    _state_names = ("spk", "mem")

    def __init__(self, beta: float | torch.Tensor, V: float | torch.Tensor = 1.0,
                 all_to_all: bool = True, linear_features: int | None = None,
                 conv2d_channels: int | None = None, kernel_size: int | None = None,
                 threshold: float | torch.Tensor = 1.0, spike_grad: Any = None,
                 surrogate_disable: bool = False, init_hidden: bool = False,
                 inhibition: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, learn_recurrent: bool = True,
                 reset_mechanism: str = "zero", state_quant: Any = False, output: bool = False,
                 reset_delay: bool = False, *, bias: torch.Tensor | None = None,
                 scale_exp: int = 0) -> None:
        _check_options(type(self).__name__, reset_mechanism, reset_delay, inhibition,
                       state_quant)
        if conv2d_channels is not None or kernel_size is not None:
            raise UnsupportedModuleError(
                f"{type(self).__name__}: conv2d_channels/kernel_size must be None (Loihi's "
                f"recurrent synapse is a Dense), got conv2d_channels={conv2d_channels}, "
                f"kernel_size={kernel_size}. Use linear_features or all_to_all=False."
            )
        super().__init__(beta, V, all_to_all, linear_features, conv2d_channels, kernel_size,
                         threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, learn_recurrent, reset_mechanism,
                         state_quant, output, reset_delay)
        if self.all_to_all:
            self.recurrent = QuantLinear.from_float(self.recurrent)
        else:
            self.recurrent = QuantOneToOne(self.V)
        self.recurrent._input_max = 1  # it carries this population's binary spikes
        if not learn_recurrent:
            self._disable_recurrent_grad()
        self._init_quant(bias, scale_exp)

    def recurrent_registers(self, n: int | None = None) -> dict[str, Any]:
        """The recurrent Dense's registers with a full ``(N, N)`` ``weight_mant``.

        ``n`` (the population size) is only needed for a one-to-one recurrence with a scalar
        ``V`` before the first forward.
        """
        rec = self.recurrent
        if isinstance(rec, QuantOneToOne):
            if n is None and self.mem.numel():
                n = int(self.mem.shape[-1])
            if n is None and rec.V.numel() == 1:
                raise ValueError(
                    f"{type(self).__name__} '{self.path}': n must be given for a scalar V "
                    f"before the first forward, got None.")
            return rec.registers(n)
        return rec.registers()  # type: ignore[operator]

    def forward(self, input_: torch.Tensor, spk: torch.Tensor | None = None,
                mem: torch.Tensor | None = None) -> Any:
        if self.init_hidden and (mem is not None or spk is not None):
            raise TypeError("When `init_hidden=True`,RLeaky expects 1 input argument.")
        if spk is not None:
            self._put("spk", spk)
        if mem is not None:
            self._put("mem", mem)
        if self.spk.shape != input_.shape:
            self.spk = torch.zeros_like(input_, device=self.spk.device)
        if self.mem.shape != input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        if not self.quantized:
            rec = self._float_input(self.recurrent(self.spk), [self.recurrent])
            new = self.beta.clamp(0, 1) * self.mem + self._float_input(input_) + rec
            if self.bias is not None:
                new = new + self.bias
            out, new = self._float_reset(new)
        else:
            a, scale, inv = self._quant_input(input_)
            out, new = self._leaky_quant_step(a + self.recurrent(self.spk), scale, inv)
        self._put("spk", out)
        self._put("mem", new)
        if self.output or not self.init_hidden:
            return out, new
        return out

    def extra_repr(self) -> str:
        return self._extra()
