"""prepare_qat / calibrate / freeze_calibration / delay_steps, gradients, errors and warnings."""

from __future__ import annotations

import copy
import warnings

import pytest
import snntorch as snn
import torch
from snntorch import utils
from torch import nn

from snntorch_loihi.errors import (
    QuantizationWarning,
    RegisterRangeError,
    SemanticsChangeWarning,
    UnsupportedModuleError,
)
from snntorch_loihi.nn import (
    QuantAwareLeaky,
    QuantAwareRLeaky,
    QuantAwareSynaptic,
    QuantLinear,
    QuantSumPool2d,
)
from snntorch_loihi.qat import calibrate, delay_steps, freeze_calibration, prepare_qat


def _leaky(**kw):
    kw.setdefault("reset_mechanism", "zero")
    return snn.Leaky(kw.pop("beta", 0.9), init_hidden=True, reset_delay=False, **kw)


def _quiet(net, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat(net, **kw)


class Custom(nn.Module):
    """A nested custom module with explicit states (init_hidden=False), as in the tutorials."""

    def __init__(self) -> None:
        super().__init__()
        self.lif2 = snn.Synaptic(0.5, 0.8, reset_mechanism="zero")   # registered first
        self.body = nn.ModuleDict({"fc": nn.Linear(12, 9, bias=False)})
        self.lif1 = snn.Leaky(0.9, reset_mechanism="zero", reset_delay=False)
        self.fc2 = nn.Linear(9, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1 = self.lif1.init_leaky()
        syn2, mem2 = self.lif2.init_synaptic()
        out = []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.body["fc"](x[t]), mem1)
            spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
            out.append(spk2)
        return torch.stack(out)


def _grads(q: nn.Module, x: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    utils.reset(q)
    zero = torch.zeros_like(x[0])
    out = torch.stack([q(x[t] if t < x.shape[0] else zero) for t in range(steps)])
    mems = [m.mem for m in q.modules() if isinstance(m, QuantAwareLeaky)]
    (out.sum() + mems[-1].sum()).backward()
    return {n: p.grad for n, p in q.named_parameters()}


def test_gradients_flow_through_quantizers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), _leaky(learn_beta=True, learn_threshold=True,
                                                  threshold=0.5),
                        nn.Linear(16, 8), snn.Synaptic(0.6, 0.8, learn_alpha=True,
                        learn_beta=True, learn_threshold=True, init_hidden=True,
                        reset_mechanism="zero", threshold=0.5),
                        nn.Linear(8, 4), _leaky(learn_beta=True, learn_threshold=True))
    q = _quiet(net)
    x = (torch.rand(20, 8, 20, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    g = _grads(q, x, 20 + delay_steps(q))
    for name in ["0.weight", "1.beta", "1.threshold", "1.bias", "2.weight", "3.alpha",
                 "3.beta", "3.threshold", "4.weight", "5.beta", "5.threshold"]:
        assert g[name] is not None, name
        assert torch.isfinite(g[name]).all(), name
        assert g[name].abs().sum() > 0, name


def test_prepare_qat_keeps_original_and_moves_bias() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 3), _leaky())
    w = net[0].weight.detach().clone()
    q = _quiet(net)
    assert torch.equal(net[0].weight, w) and net[0].bias is not None
    assert isinstance(q[0], QuantLinear) and q[0].bias is None
    assert torch.equal(q[1].bias.detach(), net[0].bias.detach())
    assert q[0].quantized and q[1].quantized
    assert not _quiet(net, quantize=False)[1].quantized


def test_float_mode_after_prepare_matches_original_spikes() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(10, 8, bias=False), _leaky(), nn.Linear(8, 3, bias=False),
                        _leaky())
    q = _quiet(net, quantize=False)
    x = (torch.rand(15, 4, 10) < 0.5).float()
    utils.reset(net)
    utils.reset(q)
    for t in range(15):
        assert torch.equal(net(x[t]), q(x[t]))


class Stepwise(nn.Module):
    """One time step per call (init_hidden=True), registered out of forward order."""

    def __init__(self) -> None:
        super().__init__()
        self.fc2 = nn.Linear(9, 4, bias=False)
        self.lif2 = _leaky()
        self.inner = nn.Sequential(nn.Linear(12, 9, bias=False), _leaky())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.fc2(self.inner(x)))


def test_custom_module_pairs_in_forward_order() -> None:
    torch.manual_seed(3)
    net = Custom()
    x = (torch.rand(12, 2, 12) < 0.5).float()
    q = _quiet(net, quantize=False, example_input=x[:1])
    assert isinstance(q.lif1, QuantAwareLeaky) and isinstance(q.lif2, QuantAwareSynaptic)
    assert q.lif1.feeders == [q.body["fc"]] and q.lif2.feeders == [q.fc2]
    assert torch.equal(q(x), net(x))
    assert delay_steps(q) == 2
    with pytest.raises(UnsupportedModuleError, match="could not be traced with torch.fx"):
        _quiet(net)
    step = Stepwise()
    qs = _quiet(step, quantize=False)                     # torch.fx trace
    assert qs.lif2.feeders == [qs.fc2] and qs.inner[1].feeders == [qs.inner[0]]
    utils.reset(step)
    utils.reset(qs)
    for t in range(12):
        assert torch.equal(step(x[t]), qs(x[t]))


def test_semantics_warnings_name_the_layer() -> None:
    net = nn.Sequential(nn.Linear(4, 3), snn.Synaptic(0.5, 0.9, init_hidden=True),
                        nn.Linear(3, 2), snn.Leaky(0.0, init_hidden=True, reset_mechanism="zero"))
    with pytest.warns(UserWarning) as record:
        q = prepare_qat(net)
    got = [(w.category, str(w.message)) for w in record]
    for cls, start in [(SemanticsChangeWarning, "Synaptic '1': reset_mechanism 'subtract'"),
                       (SemanticsChangeWarning, "Synaptic '1': reset_delay=True"),
                       (SemanticsChangeWarning, "Synaptic '1': the synapse bias"),
                       (QuantizationWarning, "QuantAwareLeaky '3': beta = 0 needs dv")]:
        assert any(c is cls and m.startswith(start) for c, m in got), start
    assert q[3].registers()["dv"] == 4095


@pytest.mark.parametrize("bad, match", [
    (nn.MaxPool2d(2), "MaxPool2d '2': module type must be one of"),
    (nn.BatchNorm2d(2), "BatchNorm2d '2': module type must be one of"),
    (snn.Alpha(0.9, 0.8, init_hidden=True), "Alpha '2': module type must be one of"),
])
def test_unsupported_modules_raise_with_path(bad, match) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), _leaky(), bad, nn.Flatten(), nn.Linear(8, 2),
                        _leaky())
    with pytest.raises(UnsupportedModuleError, match=match):
        _quiet(net)


def test_structural_errors() -> None:
    with pytest.raises(UnsupportedModuleError, match="AvgPool2d '1': pooling must come after"):
        _quiet(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), _leaky()))
    with pytest.raises(UnsupportedModuleError, match="Linear '1': a synapse must feed"):
        _quiet(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), _leaky()))
    with pytest.raises(UnsupportedModuleError, match="Linear '2': a synapse must feed a spiking"):
        _quiet(nn.Sequential(nn.Linear(3, 3), _leaky(), nn.Linear(3, 3)))
    with pytest.raises(UnsupportedModuleError, match="Leaky '0': a spiking neuron must be fed"):
        _quiet(nn.Sequential(_leaky(), nn.Linear(3, 3), _leaky()))


def test_alpha_one_is_rejected() -> None:
    net = nn.Sequential(nn.Linear(3, 3), snn.Synaptic(1.0, 0.9, init_hidden=True,
                                                      reset_mechanism="zero"))
    with pytest.raises(RegisterRangeError, match="Synaptic '1': alpha must be at most"):
        _quiet(net)


def test_load_registers_round_trip_and_freeze() -> None:
    torch.manual_seed(4)
    q = _quiet(nn.Sequential(nn.Linear(6, 5), _leaky(), nn.Linear(5, 2),
                             snn.Synaptic(0.5, 0.7, init_hidden=True, reset_mechanism="zero")))
    regs = [m.registers() for m in q]
    q2 = copy.deepcopy(q)
    for m, r in zip(q2, regs, strict=True):
        if isinstance(m, QuantLinear):
            m.load_registers(r["weight_mant"], r["weight_exp"], r["num_weight_bits"],
                             r["sign_mode"], scale_exp=m.scale_exp)
        else:
            m.load_registers(r["du"], r["dv"], r["vth"], r["bias_mant"], r["bias_exp"],
                             scale_exp=r["scale_exp"])
    for m, r in zip(q2, regs, strict=True):
        r2 = m.registers()
        for key, val in r.items():
            assert (torch.equal(val, r2[key]) if torch.is_tensor(val) else val == r2[key]), key
    with torch.no_grad():
        q2[0].weight.mul_(4)
    calibrate(q2)                              # frozen by load_registers: no change
    assert q2[1].scale_exp == regs[1]["scale_exp"]
    q3 = copy.deepcopy(q)
    freeze_calibration(q3)
    with torch.no_grad():
        q3[0].weight.mul_(4)
    calibrate(q3)
    assert q3[1].scale_exp == regs[1]["scale_exp"]
    q4 = copy.deepcopy(q)
    with torch.no_grad():
        q4[0].weight.mul_(64)
    calibrate(q4)
    assert q4[1].scale_exp < regs[1]["scale_exp"]


def test_state_dict_round_trip_keeps_calibration() -> None:
    torch.manual_seed(5)
    q = _quiet(nn.Sequential(nn.Linear(6, 5), _leaky()))
    fresh = _quiet(nn.Sequential(nn.Linear(6, 5), _leaky(threshold=3.0)), quantize=False)
    fresh.load_state_dict(q.state_dict())
    assert fresh[1].scale_exp == q[1].scale_exp and fresh[1].quantized
    assert torch.equal(fresh[0].registers()["weight_mant"], q[0].registers()["weight_mant"])


def test_pool_rleaky_and_weight_bits_mapping() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), _leaky(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(2 * 2 * 2, 6),
                        snn.RLeaky(0.9, linear_features=6, init_hidden=True,
                                   reset_mechanism="zero"))
    q = _quiet(net, weight_bits={"4": 3, "5.recurrent": 4})
    assert isinstance(q[2], QuantSumPool2d) and isinstance(q[5], QuantAwareRLeaky)
    assert q[4].registers()["num_weight_bits"] == 3
    assert q[5].recurrent_registers()["num_weight_bits"] == 4
    assert q[5].recurrent_registers()["weight_mant"].shape == (6, 6)
    assert q[0].registers()["weight_exp"] == 0
    assert delay_steps(q) == 2
    torch.testing.assert_close(q[4].weight, net[4].weight / 4)


def test_deepcopy_right_after_a_training_step() -> None:
    torch.manual_seed(6)
    q = _quiet(nn.Sequential(nn.Linear(6, 5), _leaky(learn_beta=True), nn.Linear(5, 2),
                             snn.Synaptic(0.5, 0.7, init_hidden=True, reset_mechanism="zero")))
    x = (torch.rand(5, 3, 6) < 0.5).float()
    _grads(q, x, 7)                              # caches and states now hold graphs
    q2 = copy.deepcopy(q)                        # (pickle fails on snnTorch's atan closure)
    utils.reset(q)
    utils.reset(q2)
    for t in range(5):
        assert torch.equal(q(x[t]), q2(x[t]))


def test_copy_keeps_running() -> None:
    q = _quiet(nn.Sequential(nn.Linear(4, 3), _leaky()))
    q2 = copy.deepcopy(q)
    q2(torch.ones(2, 4))
    q2(torch.ones(2, 4))
