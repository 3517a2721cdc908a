"""Quantized mode equals the fixed-point reference (``fixed.network.simulate``) exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
from hypothesis import given
from hypothesis import strategies as st
from snntorch import utils
from torch import nn

from snntorch_loihi.errors import RegisterRangeError
from snntorch_loihi.fixed.network import simulate
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.nn import (
    QuantAwareRLeaky,
    QuantAwareSynaptic,
    QuantConv2d,
    QuantLinear,
    QuantSumPool2d,
)
from snntorch_loihi.nn.neurons import QuantNeuronMixin
from snntorch_loihi.qat import delay_steps, prepare_qat
from snntorch_loihi.spec import LOIHI


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


def _to_ir(net: nn.Module, x0: torch.Tensor) -> LoihiNetwork:
    """Build the IR of a Sequential quantized net from ``registers()`` (pools folded)."""
    shapes: dict[int, tuple] = {}

    def record(mod, inp, out) -> None:
        out = out[0] if isinstance(out, tuple) else out
        shapes.setdefault(id(mod), (tuple(inp[0].shape[1:]), tuple(out.shape[1:])))

    hooks = [m.register_forward_hook(record) for m in net.modules() if m is not net]
    with torch.no_grad():
        net(x0)
    for h in hooks:
        h.remove()
    utils.reset(net)
    layers, syn, pool = [], None, None
    for name, m in net.named_children():
        if isinstance(m, QuantSumPool2d):
            pool = m
        elif isinstance(m, (QuantLinear, QuantConv2d)):
            r = m.registers()
            w = r["weight_mant"]
            in_shape, out_shape = shapes[id(m)]
            if isinstance(m, QuantLinear) and pool is not None:   # fold the sum pool
                p_in = shapes[id(pool)][0]
                n_in = int(np.prod(p_in))
                basis = torch.eye(n_in).reshape(n_in, *p_in)
                P = pool(basis).reshape(n_in, -1).T.round().long()
                w, in_shape = w @ P, p_in
            kind = "dense" if isinstance(m, QuantLinear) else "conv"
            kw = {} if kind == "dense" else dict(stride=m.stride, padding=m.padding,
                                                  dilation=m.dilation, groups=m.groups)
            syn = LoihiSynapse(kind, _np(w), in_shape, out_shape, weight_exp=r["weight_exp"],
                               num_weight_bits=r["num_weight_bits"], sign_mode=r["sign_mode"],
                               num_message_bits=r["num_message_bits"], **kw)
            pool = None
        elif isinstance(m, QuantNeuronMixin):
            r = m.registers()
            neuron = LoihiNeuron(shapes[id(m)][1], r["du"], r["dv"], r["vth"],
                                 _np(r["bias_mant"]), _np(r["bias_exp"]), r["scale_exp"],
                                 r["reset"])
            rec = None
            if isinstance(m, QuantAwareRLeaky):
                rr = m.recurrent_registers()
                n = int(np.prod(neuron.shape))
                rec = LoihiSynapse("dense", _np(rr["weight_mant"]).reshape(n, n), (n,), (n,),
                                   weight_exp=rr["weight_exp"], sign_mode=rr["sign_mode"],
                                   num_weight_bits=rr["num_weight_bits"])
            layers.append(LoihiLayer(name, syn, neuron, rec))
    return LoihiNetwork(tuple(x0.shape[1:]), tuple(layers))


def _run(net: nn.Module, x: torch.Tensor, steps: int) -> list[dict[str, torch.Tensor]]:
    neurons = [m for m in net.modules() if isinstance(m, QuantNeuronMixin)]
    rec: list[dict[str, list]] = [{"s": [], "v": [], "u": []} for _ in neurons]
    hooks = []
    for i, n in enumerate(neurons):
        def hook(mod, inp, out, i=i):
            spk = out[0] if isinstance(out, tuple) else out
            k = 2.0**mod.scale_exp
            rec[i]["s"].append(spk.detach())
            rec[i]["v"].append(mod.mem.detach() * k)
            if hasattr(mod, "syn"):
                rec[i]["u"].append(mod.syn.detach() * k)
        hooks.append(n.register_forward_hook(hook))
    utils.reset(net)
    zero = torch.zeros_like(x[0])
    for t in range(steps):
        net(x[t] if t < x.shape[0] else zero)
    for h in hooks:
        h.remove()
    return [{k: torch.stack(v) for k, v in r.items() if v} for r in rec]


def _assert_exact(net: nn.Module, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    ir = _to_ir(net, x[0])
    ir.validate()
    steps = x.shape[0] + delay_steps(net)
    assert delay_steps(net) == len(ir.layers)
    ref = simulate(ir, x)
    got = _run(net, x, steps)
    for g, (name, trace) in zip(got, ref.layers.items(), strict=True):
        assert torch.equal(g["s"].long(), trace.s.reshape(g["s"].shape)), name
        assert torch.equal(g["v"].long(), trace.v.reshape(g["v"].shape)), name
        assert torch.equal(g["v"], g["v"].round())
        if "u" in g:
            assert torch.equal(g["u"].long(), trace.u.reshape(g["u"].shape)), name
    return got


def _spikes(shape, p=0.3, seed=0) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _convert(net: nn.Module, **kw) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat(net, **kw)


def _leaky(**kw):
    kw.setdefault("reset_mechanism", "zero")
    return snn.Leaky(kw.pop("beta", 0.9), init_hidden=True, reset_delay=False, **kw)


def test_dense_leaky_synaptic_with_bias_matches_reference() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 20), _leaky(threshold=0.5), nn.Linear(20, 10),
                        snn.Synaptic(0.7, 0.8, init_hidden=True, reset_mechanism="zero"),
                        nn.Linear(10, 4), _leaky(reset_mechanism="none"))
    q = _convert(net, weight_bits={"0": 6, "2": 8, "4": 3})
    got = _assert_exact(q, _spikes((25, 6, 30)))
    assert got[0]["s"].sum() > 0 and got[1]["s"].sum() > 0


def test_conv_pool_flatten_dense_matches_reference() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(threshold=0.3), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 5), _leaky(threshold=0.3))
    q = _convert(net)
    got = _assert_exact(q, _spikes((20, 3, 2, 8, 8), p=0.4))
    assert got[0]["s"].sum() > 0


@pytest.mark.parametrize("all_to_all", [True, False])
def test_recurrent_matches_reference(all_to_all: bool) -> None:
    torch.manual_seed(2)
    kw = {"linear_features": 12} if all_to_all else {"V": torch.full((12,), 0.4)}
    net = nn.Sequential(nn.Linear(16, 12), snn.RLeaky(0.9, all_to_all=all_to_all,
                        threshold=0.4, init_hidden=True, reset_mechanism="zero", **kw))
    q = _convert(net)
    assert isinstance(q[1], QuantAwareRLeaky)
    got = _assert_exact(q, _spikes((30, 4, 16)))
    assert got[0]["s"].sum() > 0


def test_overflow_wrap_and_saturation_match_reference() -> None:
    lin = QuantLinear(8, 3, bias=False)
    lif = QuantAwareSynaptic(0.5, 1.0, init_hidden=True)
    lin.load_registers(torch.full((3, 8), 254), weight_exp=7, scale_exp=0)
    lif.load_registers(du=0, dv=0, vth=LOIHI.vth_max, scale_exp=0)
    lin.scale_exp = 0
    net = nn.Sequential(lin, lif)
    for m in net:
        m.quantized = True
    got = _assert_exact(net, torch.ones(12, 2, 8))
    u = got[0]["u"]
    assert u.min() < 0                     # the current wrapped
    assert got[0]["v"].abs().max() == LOIHI.v_max or got[0]["s"].sum() > 0


def test_graded_input_and_input_check() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 4), _leaky(threshold=2.0))
    q = _convert(net, num_message_bits=4)
    x = torch.randint(0, 16, (10, 2, 6), generator=torch.Generator().manual_seed(0)).float()
    _assert_exact(q, x)
    with pytest.raises(RegisterRangeError, match=r"input must be integers in \[-15, 15\]"):
        q(torch.full((2, 6), 0.5))
    qb = _convert(net)
    with pytest.raises(RegisterRangeError, match="input must be binary spikes"):
        qb(torch.full((2, 6), 2.0))


@given(scale=st.floats(0.01, 20.0), thr=st.floats(0.05, 10.0), bits=st.integers(1, 8),
       beta=st.floats(0.0, 1.0), seed=st.integers(0, 100))
def test_registers_stay_in_hardware_range(scale, thr, bits, beta, seed) -> None:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(10, 7), _leaky(beta=beta, threshold=thr),
                        nn.Linear(7, 3), snn.Synaptic(0.5, beta, threshold=thr,
                                                      init_hidden=True, reset_mechanism="zero"))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(scale)
                m.bias.mul_(scale)
    q = _convert(net, weight_bits=bits)
    ir = _to_ir(q, torch.zeros(1, 10))
    ir.validate()
    for layer in ir.layers:
        assert np.abs(layer.synapse.weight_mant).max() <= 256
    _assert_exact(q, _spikes((8, 2, 10), p=0.5, seed=seed))


def _run_with_grads(net: nn.Module, x: torch.Tensor, reference: bool):
    QuantNeuronMixin.reference = reference
    try:
        net.zero_grad(set_to_none=True)
        got = _run(net, x, x.shape[0] + delay_steps(net))
        utils.reset(net)
        zero = torch.zeros_like(x[0])
        out = torch.stack([net(x[t] if t < x.shape[0] else zero)
                           for t in range(x.shape[0] + delay_steps(net))])
        (out.sum() + sum(m.mem.sum() for m in net.modules()
                         if isinstance(m, QuantNeuronMixin))).backward()
        return got, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    finally:
        QuantNeuronMixin.reference = False


def test_fused_kernels_equal_core_ste_path() -> None:
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Linear(24, 16), _leaky(threshold=0.4, learn_beta=True, learn_threshold=True),
        nn.Linear(16, 12), snn.Synaptic(0.7, 0.85, init_hidden=True, reset_mechanism="zero",
                                        learn_alpha=True, learn_beta=True, threshold=0.3),
        nn.Linear(12, 8), snn.RLeaky(0.9, linear_features=8, init_hidden=True, threshold=0.3,
                                     reset_mechanism="zero", learn_beta=True),
        nn.Linear(8, 3), _leaky(reset_mechanism="none"))
    q = _convert(net, weight_bits=4)
    x = _spikes((20, 5, 24), p=0.4, seed=3)
    fast, g_fast = _run_with_grads(q, x, reference=False)
    ref, g_ref = _run_with_grads(q, x, reference=True)
    for a, b in zip(fast, ref, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert fast[0]["s"].sum() > 0 and fast[2]["s"].sum() > 0
    assert g_fast.keys() == g_ref.keys()
    for name in g_fast:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_prepared_net_still_wraps_after_registers_overflow() -> None:
    torch.manual_seed(8)
    q = _convert(nn.Sequential(nn.Linear(8, 3, bias=False), _leaky(beta=1.0, threshold=0.5)))
    q[0].load_registers(torch.full((3, 8), 254), weight_exp=7, scale_exp=q[1].scale_exp)
    assert q[1]._needs_wrap()
    got = _assert_exact(q, torch.ones(6, 2, 8))
    assert got[0]["v"].min() < 0                     # a_in << 6 wrapped to negative
    q2 = _convert(nn.Sequential(nn.Linear(8, 3, bias=False), _leaky()))
    assert not q2[1]._needs_wrap()                   # calibrated: no overflow possible


@given(v=st.lists(st.integers(-(2**23) + 1, 2**23 - 1), min_size=1, max_size=64),
       f=st.integers(0, 4096))
def test_float32_decay_kernel_is_exact(v, f) -> None:
    from snntorch_loihi.fixed import decay
    from snntorch_loihi.nn._kernels import _decay

    x = torch.tensor(v, dtype=torch.float32)
    want = decay(torch.tensor(v, dtype=torch.int64), f)
    assert torch.equal(_decay(x, torch.tensor(float(f))).long(), want)
    edge = torch.tensor([2.0**23 - 1, -(2.0**23 - 1), 4095.0, -4097.0])
    assert torch.equal(_decay(edge, torch.tensor(float(f))).long(), decay(edge.long(), f))


def test_hand_built_network_is_paired_and_calibrated() -> None:
    from snntorch_loihi.nn import QuantAwareLeaky, enable_quantization
    from snntorch_loihi.qat import calibrate

    torch.manual_seed(9)
    net = nn.Sequential(QuantLinear(12, 8, bias=False), QuantAwareLeaky(0.8, init_hidden=True),
                        QuantLinear(8, 3, bias=False),
                        QuantAwareSynaptic(0.5, 0.9, init_hidden=True, threshold=0.5))
    calibrate(net)
    assert net[1].feeders == [net[0]] and net[3].feeders == [net[2]]
    assert net[0].check_input and not net[2].check_input
    net.apply(enable_quantization)
    _assert_exact(net, _spikes((15, 4, 12), p=0.5))
