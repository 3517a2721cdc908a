"""Quantized synapses: ``QuantLinear``, ``QuantConv2d``, ``QuantSumPool2d`` and a one-to-one map.

In float mode (``quantized=False``) each layer is its PyTorch parent, unchanged. In quantized
mode a synapse outputs the integer ``a_in`` Lava's Dense / Conv computes from its input at this
step (weight-mantissa units after the layer exponent), as a float tensor of whole numbers::

    weight_mant = clamp(round(w * 2**(k - 6 - weight_exp) / step) * step, lo, hi)   # STE round
    a_in = floor((weight_mant @ x) * 2**weight_exp)

with ``k = scale_exp`` shared with the neuron the synapse feeds and ``(lo, hi, step) =
weight_grid(num_weight_bits, sign_mode)``. Lava's one-step synaptic delay is applied by that
neuron (see :mod:`snntorch_loihi.nn.neurons`), so that ``snntorch.utils.reset`` clears it.
The float value of a mantissa is ``weight_mant * 2**(weight_exp + 6 - k)``.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RegisterRangeError, UnsupportedModuleError
from ..fixed import check_weights, determine_sign_mode, floor_ste, weight_grid
from ..fixed.synapse import SignMode
from ._kernels import quant_ste

__all__ = ["QuantLinear", "QuantConv2d", "QuantSumPool2d", "QuantOneToOne", "QuantSynapseMixin"]

_CACHES = ("_qcache", "_wcache", "_checked", "_a_prev")


def module_state(module: nn.Module) -> dict[str, Any]:
    """``module.__dict__`` for copying/pickling: without caches, hidden states detached.

    The caches hold autograd graphs (and a weakref), which ``deepcopy`` and ``pickle`` refuse.
    """
    state = {k: v for k, v in module.__dict__.items() if k not in _CACHES}
    bufs = state.get("_buffers")
    if bufs is not None and any(torch.is_tensor(b) and not b.is_leaf for b in bufs.values()):
        state["_buffers"] = type(bufs)(
            (k, b.detach() if torch.is_tensor(b) and not b.is_leaf else b)
            for k, b in bufs.items())
    return state


class QuantSynapseMixin:
    """Quantization state shared by the synapse layers (python ints: no device syncs)."""

    quantized: bool
    weight: torch.Tensor
    bias: torch.Tensor | None
    _scale_exp: int
    _weight_exp: int
    _sign_mode: SignMode | None

    def __getstate__(self) -> dict[str, Any]:
        return module_state(self)  # type: ignore[arg-type]

    def _init_quant(self, num_weight_bits: int = 8, num_message_bits: int = 0) -> None:
        self.quantized = False
        self.num_weight_bits = int(num_weight_bits)
        self.num_message_bits = int(num_message_bits)
        self.check_input = True
        self.calibration_frozen = False
        self.netx_compatible = True
        self.path = ""
        self._scale_exp = 0
        self._weight_exp = 0
        self._sign_mode = None

    # ---- registers -------------------------------------------------------------------------
    @property
    def scale_exp(self) -> int:
        """Power-of-two scale shared with the neuron this synapse feeds."""
        return self._scale_exp

    @scale_exp.setter
    def scale_exp(self, k: int) -> None:
        self._scale_exp = int(k)

    @property
    def weight_exp(self) -> int:
        """Layer exponent in ``[-8, 7]`` (0 for conv)."""
        return self._weight_exp

    @weight_exp.setter
    def weight_exp(self, e: int) -> None:
        self._weight_exp = int(e)

    @property
    def sign_mode(self) -> SignMode:
        """Lava's sign mode; derived from the float weights' signs until set."""
        if self._sign_mode is None:
            return determine_sign_mode(self.weight.detach())
        return self._sign_mode

    @sign_mode.setter
    def sign_mode(self, mode: SignMode | None) -> None:
        if mode not in (None, "mixed", "excitatory", "inhibitory"):
            raise RegisterRangeError(
                f"{type(self).__name__} '{self.path}': sign_mode must be one of 'mixed', "
                f"'excitatory', 'inhibitory', got {mode!r}."
            )
        self._sign_mode = mode

    def _grid(self) -> tuple[float, float, float, int]:
        lo, hi, step = weight_grid(self.num_weight_bits, self.sign_mode)
        pre = 2.0 ** (self._scale_exp - 6 - self._weight_exp) / step
        return pre, lo / step, hi / step, step

    def weight_mant_ste(self) -> torch.Tensor:
        """Weight mantissas on Lava's grid (float tensor, STE gradient to ``weight``)."""
        pre, lo, hi, step = self._grid()
        return quant_ste(self.weight, pre, lo, hi, float(step))

    def _weight_eff(self) -> torch.Tensor:
        """``weight_mant << max(weight_exp, 0)``, cached until the weight or a setting changes."""
        return self._weight_cache()[0]

    def _weight_cache(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(w_eff, w_eff.T, a_bound)``; ``a_bound`` bounds ``|a_in|`` (one sync per update)."""
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, self._scale_exp, self._weight_exp,
               self.num_weight_bits, self._sign_mode, torch.is_grad_enabled(),
               getattr(self, "_input_max", None))
        cache = self.__dict__.get("_wcache")
        if cache is not None and cache[0] == key:
            return cache[1]
        pre, lo, hi, step = self._grid()
        w_eff = quant_ste(w, pre, lo, hi, float(step) * 2.0 ** max(self._weight_exp, 0))
        xmax = getattr(self, "_input_max", None)
        bound = float("inf")
        if xmax is not None:
            rows = w_eff.detach().abs().reshape(w_eff.shape[0], -1).sum(1) if w_eff.dim() > 1 \
                else w_eff.detach().abs()
            bound = float(rows.max()) * xmax * 2.0 ** min(self._weight_exp, 0) + 1 \
                if rows.numel() else 0.0
        val = (w_eff, w_eff.t() if w_eff.dim() == 2 else w_eff, bound)
        self.__dict__["_wcache"] = (key, val)
        return val

    def input_bound(self) -> float:
        """Worst-case ``|a_in|`` this synapse can deliver (``inf`` without a known input range).

        Neurons use it to skip Lava's 24-bit wrap of ``a_in << 6`` when it cannot happen.
        """
        return self._weight_cache()[2]

    def _shift_neg(self, acc: torch.Tensor) -> torch.Tensor:
        if self._weight_exp >= 0:
            return acc
        return floor_ste(acc * 2.0**self._weight_exp)  # floor of the SUM, as Lava does

    def registers(self) -> dict[str, Any]:
        """Lava's Dense/Conv registers, exactly as the quantized forward uses them.

        Returns:
            ``dict(weight_mant=LongTensor, weight_exp=int, num_weight_bits=int, sign_mode=str,
            num_message_bits=int)``.
        """
        with torch.no_grad():
            w = self.weight_mant_ste().to(torch.int64)
        return dict(weight_mant=w, weight_exp=self._weight_exp,
                    num_weight_bits=self.num_weight_bits, sign_mode=self.sign_mode,
                    num_message_bits=self.num_message_bits)

    def load_registers(
        self, weight_mant: torch.Tensor, weight_exp: int = 0, num_weight_bits: int = 8,
        sign_mode: SignMode | None = None, scale_exp: int | None = None,
    ) -> None:
        """Set the float weights so that :meth:`registers` returns exactly these values.

        Freezes the calibration of this layer.
        """
        wm = torch.as_tensor(weight_mant)
        check_weights(wm, weight_exp, where=f"{type(self).__name__} '{self.path}'")
        if scale_exp is not None:
            self.scale_exp = scale_exp
        self.weight_exp, self.num_weight_bits = weight_exp, int(num_weight_bits)
        self.sign_mode = sign_mode or determine_sign_mode(wm)
        scale = 2.0 ** (self._weight_exp + 6 - self._scale_exp)
        with torch.no_grad():
            self.weight.copy_(wm.to(self.weight) * scale)
        self.calibration_frozen = True

    def _check_quant_input(self, x: torch.Tensor) -> None:
        base = x._base if x._base is not None else x   # x[t] of one (T, B, ...) tensor:
        seen = self.__dict__.get("_checked")           # check the whole tensor once
        if seen is not None and seen[0]() is base and seen[1] == (base._version,
                                                                   self.num_message_bits):
            return
        self._check_values(base)
        self.__dict__["_checked"] = (weakref.ref(base), (base._version, self.num_message_bits))

    def _check_values(self, x: torch.Tensor) -> None:
        name = f"{type(self).__name__} '{self.path}'"
        if self.num_message_bits == 0:
            if not torch.equal(x, (x == 1).to(x.dtype)):
                raise RegisterRangeError(
                    f"{name}: input must be binary spikes (0/1) in quantized mode, got other "
                    f"values. Encode real-valued inputs as spikes (snntorch.spikegen), or send "
                    f"integers as graded spikes by setting num_message_bits on this layer."
                )
        else:
            lim = 2**self.num_message_bits - 1
            if not bool(((x == torch.round(x)) & (x.abs() <= lim)).all()):
                raise RegisterRangeError(
                    f"{name}: input must be integers in [-{lim}, {lim}] (num_message_bits="
                    f"{self.num_message_bits}) in quantized mode, got other values. Round or "
                    f"rescale the input, or raise num_message_bits."
                )

    def _bias_error(self) -> UnsupportedModuleError:
        return UnsupportedModuleError(
            f"{type(self).__name__} '{self.path}': bias must be None in quantized mode (Loihi "
            f"adds biases in the neuron), got a bias. Use prepare_qat, which moves it into the "
            f"neuron this layer feeds."
        )

    def extra_repr(self) -> str:  # type: ignore[override]
        base = super().extra_repr()  # type: ignore[misc]
        return (f"{base}, quantized={self.quantized}, num_weight_bits={self.num_weight_bits}, "
                f"scale_exp={self._scale_exp}, weight_exp={self._weight_exp}")

    def get_extra_state(self) -> dict[str, Any]:
        return dict(scale_exp=self._scale_exp, weight_exp=self._weight_exp,
                    sign_mode=self._sign_mode, num_weight_bits=self.num_weight_bits,
                    num_message_bits=self.num_message_bits, quantized=self.quantized,
                    frozen=self.calibration_frozen)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._scale_exp, self._weight_exp = state["scale_exp"], state["weight_exp"]
        self._sign_mode, self.num_weight_bits = state["sign_mode"], state["num_weight_bits"]
        self.num_message_bits, self.quantized = state["num_message_bits"], state["quantized"]
        self.calibration_frozen = state["frozen"]


class QuantLinear(QuantSynapseMixin, nn.Linear):
    """``nn.Linear`` that becomes Lava's Dense in quantized mode.

    Example:
        >>> fc = QuantLinear(2, 1, bias=False)
        >>> fc.load_registers(torch.tensor([[100, -50]]), weight_exp=-1, scale_exp=10)
        >>> fc.quantized = True
        >>> fc(torch.tensor([[1., 1.]])).tolist()        # floor((100 - 50) / 2)
        [[25.0]]
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 num_weight_bits: int = 8, num_message_bits: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(num_weight_bits, num_message_bits)

    @classmethod
    def from_float(cls, mod: nn.Linear, **kwargs: Any) -> QuantLinear:
        """A QuantLinear holding ``mod``'s weights (and bias, for float mode)."""
        q = cls(mod.in_features, mod.out_features, mod.bias is not None,
                device=mod.weight.device, dtype=mod.weight.dtype, **kwargs)
        with torch.no_grad():
            q.weight.copy_(mod.weight)
            if mod.bias is not None:
                q.bias.copy_(mod.bias)
        q.weight.requires_grad_(mod.weight.requires_grad)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantized:
            return F.linear(x, self.weight, self.bias)
        if self.bias is not None:
            raise self._bias_error()
        if self.check_input:
            self._check_quant_input(x)
        return self._shift_neg(torch.matmul(x, self._weight_cache()[1]))


class QuantConv2d(QuantSynapseMixin, nn.Conv2d):
    """``nn.Conv2d`` that becomes Lava's Conv in quantized mode (``weight_exp`` is always 0)."""

    def __init__(self, *args: Any, num_weight_bits: int = 8, num_message_bits: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_quant(num_weight_bits, num_message_bits)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise UnsupportedModuleError(
                f"QuantConv2d: padding must be an explicit integer with padding_mode='zeros', "
                f"got padding={self.padding!r}, padding_mode={self.padding_mode!r}."
            )

    @classmethod
    def from_float(cls, mod: nn.Conv2d, **kwargs: Any) -> QuantConv2d:
        """A QuantConv2d holding ``mod``'s weights (and bias, for float mode)."""
        q = cls(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride,
                padding=mod.padding, dilation=mod.dilation, groups=mod.groups,
                bias=mod.bias is not None, padding_mode=mod.padding_mode,
                device=mod.weight.device, dtype=mod.weight.dtype, **kwargs)
        with torch.no_grad():
            q.weight.copy_(mod.weight)
            if mod.bias is not None:
                q.bias.copy_(mod.bias)
        return q

    @property
    def weight_exp(self) -> int:  # type: ignore[override]
        """Always 0: Lava's Conv ignores the weight exponent."""
        return 0

    @weight_exp.setter
    def weight_exp(self, e: int) -> None:
        if int(e) != 0:
            raise RegisterRangeError(
                f"QuantConv2d '{self.path}': weight_exp must be 0 (Lava's Conv ignores it), "
                f"got {e}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantized:
            return self._conv_forward(x, self.weight, self.bias)
        if self.bias is not None:
            raise self._bias_error()
        if self.check_input:
            self._check_quant_input(x)
        return self._conv_forward(x, self._weight_eff(), None)


class QuantOneToOne(QuantSynapseMixin, nn.Module):
    """One-to-one recurrent weights ``x * V`` (snnTorch's RLeaky with ``all_to_all=False``).

    In quantized mode it is a diagonal Dense: ``floor(weight_mant * x * 2**weight_exp)``.
    """

    def __init__(self, V: torch.Tensor, num_weight_bits: int = 8) -> None:
        super().__init__()
        self.V = V
        self._init_quant(num_weight_bits, 0)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.V

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantized:
            return x * self.V
        return self._shift_neg(x * self._weight_eff())

    def registers(self, n: int | None = None) -> dict[str, Any]:  # type: ignore[override]
        """As :meth:`QuantSynapseMixin.registers`, with the full ``(n, n)`` diagonal matrix."""
        regs = super().registers()
        d = regs["weight_mant"].reshape(-1)
        if n is not None and d.numel() == 1:
            d = d.expand(n)
        regs["weight_mant"] = torch.diag(d)
        return regs

    def extra_repr(self) -> str:
        return f"quantized={self.quantized}, scale_exp={self._scale_exp}"


class QuantSumPool2d(nn.Module):
    """Sum pooling of spikes: integer spike counts, exact in both modes.

    ``from_float(nn.AvgPool2d)`` keeps the average semantics in float mode only together with
    :func:`~snntorch_loihi.qat.prepare_qat`, which folds ``1 / kernel_size**2`` into the weights
    of the synapse after the pool.

    Example:
        >>> QuantSumPool2d(2)(torch.ones(1, 1, 2, 2))
        tensor([[[[4.]]]])
    """

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.quantized = False

    @classmethod
    def from_float(cls, mod: nn.AvgPool2d) -> QuantSumPool2d:
        """A sum pool with ``mod``'s geometry (``padding=0``, ``ceil_mode=False`` only)."""
        if mod.padding not in (0, (0, 0)) or mod.ceil_mode:
            raise UnsupportedModuleError(
                f"AvgPool2d: padding must be 0 and ceil_mode False for Loihi, got "
                f"padding={mod.padding}, ceil_mode={mod.ceil_mode}."
            )
        return cls(mod.kernel_size, mod.stride)

    @property
    def area(self) -> int:
        """Number of inputs summed per output (``kH * kW``)."""
        k = self.kernel_size
        return k * k if isinstance(k, int) else int(k[0] * k[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
