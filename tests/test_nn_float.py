"""Float mode of the QuantAware neurons equals snnTorch with zero reset, spike for spike."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from snntorch import surrogate, utils

from snntorch_loihi.nn import (
    QuantAwareLeaky,
    QuantAwareRLeaky,
    QuantAwareSynaptic,
    disable_quantization,
    enable_quantization,
    quantization,
)


def _pair(kind: str, reset: str = "zero", init_hidden: bool = True, **kw):
    torch.manual_seed(0)
    args = dict(threshold=0.7, init_hidden=init_hidden, reset_mechanism=reset, **kw)
    if kind == "leaky":
        return (snn.Leaky(0.85, reset_delay=False, **args), QuantAwareLeaky(0.85, **args))
    if kind == "synaptic":
        return (snn.Synaptic(0.6, 0.85, reset_delay=False, **args),
                QuantAwareSynaptic(0.6, 0.85, **args))
    ref = snn.RLeaky(0.85, linear_features=12, reset_delay=False, **args)
    q = QuantAwareRLeaky(0.85, linear_features=12, **args)
    q.recurrent.load_state_dict(ref.recurrent.state_dict(), strict=False)
    return ref, q


@pytest.mark.parametrize("kind", ["leaky", "synaptic", "rleaky"])
@pytest.mark.parametrize("reset", ["zero", "none"])
def test_float_mode_equals_snntorch_init_hidden(kind: str, reset: str) -> None:
    ref, q = _pair(kind, reset)
    x = torch.randn(40, 8, 12, generator=torch.Generator().manual_seed(1)) * 0.8
    utils.reset(ref)
    utils.reset(q)
    for t in range(x.shape[0]):
        s_ref, s_q = ref(x[t]), q(x[t])
        assert torch.equal(s_ref, s_q), t
        assert torch.equal(ref.mem, q.mem), t
    assert q.mem.abs().sum() > 0


@pytest.mark.parametrize("kind", ["leaky", "synaptic", "rleaky"])
def test_float_mode_equals_snntorch_explicit_states(kind: str) -> None:
    ref, q = _pair(kind, init_hidden=False)
    x = torch.randn(30, 4, 12, generator=torch.Generator().manual_seed(2))
    st_ref = ref.reset_mem()
    st_q = q.reset_mem()
    st_ref = st_ref if isinstance(st_ref, tuple) else (st_ref,)
    st_q = st_q if isinstance(st_q, tuple) else (st_q,)
    for t in range(x.shape[0]):
        out_ref = ref(x[t], *st_ref)
        out_q = q(x[t], *st_q)
        for a, b in zip(out_ref, out_q, strict=True):
            assert torch.equal(a, b)
        st_ref, st_q = out_ref[1:], out_q[1:]
        if kind == "rleaky":
            st_ref, st_q = out_ref, out_q


def test_output_flag_and_surrogate_options() -> None:
    q = QuantAwareLeaky(0.9, init_hidden=True, output=True, spike_grad=surrogate.fast_sigmoid())
    spk, mem = q(torch.ones(2, 3))
    assert spk.shape == mem.shape == (2, 3)
    q2 = QuantAwareLeaky(0.9, surrogate_disable=True)
    x = torch.full((1, 2), 2.0, requires_grad=True)
    spk, _ = q2(x)
    assert spk.tolist() == [[1.0, 1.0]]


def test_learnable_parameters_are_registered() -> None:
    q = QuantAwareSynaptic(0.5, 0.9, learn_alpha=True, learn_beta=True, learn_threshold=True)
    names = {n for n, _ in q.named_parameters()}
    assert {"alpha", "beta", "threshold"} <= names


def test_toggles_and_context_manager() -> None:
    q = QuantAwareLeaky(0.9)
    q.apply(enable_quantization)
    assert q.quantized
    q.apply(disable_quantization)
    assert not q.quantized
    with quantization(q):
        assert q.quantized
    assert not q.quantized


@pytest.mark.parametrize("cls", [QuantAwareLeaky, QuantAwareRLeaky])
def test_subtract_reset_is_rejected(cls) -> None:
    kw = {"linear_features": 3} if cls is QuantAwareRLeaky else {}
    with pytest.raises(ValueError, match="reset_mechanism must be 'zero' or 'none', got 'subtract'"):
        cls(0.9, reset_mechanism="subtract", **kw)
    with pytest.raises(ValueError, match="reset_delay must be False"):
        cls(0.9, reset_delay=True, **kw)


def test_utils_reset_clears_state_and_delay() -> None:
    q = QuantAwareLeaky(0.9, init_hidden=True)
    q.load_registers(du=4095, dv=0, vth=1000, scale_exp=6)
    q.quantized = True
    q(torch.full((1, 2), 5.0))
    q(torch.full((1, 2), 5.0))
    assert q.mem.abs().sum() > 0
    utils.reset(torch.nn.Sequential(q))      # snnTorch inspects the children of the net
    q(torch.zeros(1, 2))                     # nothing pending after the reset
    assert q.mem.abs().sum() == 0
