"""export / extract / from_nir: registers as the training forward uses them, spikes bit-exact."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import snntorch as snn
import snntorch.utils as snn_utils
import torch
from torch import nn

from snntorch_loihi.errors import QuantizationWarning, RegisterRangeError, UnsupportedModuleError
from snntorch_loihi.export import export, extract, from_nir, from_nir_graph
from snntorch_loihi.fixed.network import simulate
from snntorch_loihi.ir import LoihiNetwork
from snntorch_loihi.nn import QuantAwareLeaky, QuantLinear, QuantSumPool2d, enable_quantization
from snntorch_loihi.qat import prepare_qat
from snntorch_loihi.spec import LOIHI


def assert_same_ir(a: LoihiNetwork, b: LoihiNetwork) -> None:
    assert tuple(a.input_shape) == tuple(b.input_shape)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        for sa, sb in ((la.synapse, lb.synapse), (la.recurrent, lb.recurrent)):
            assert (sa is None) == (sb is None)
            if sa is not None:
                assert np.array_equal(sa.weight_mant, sb.weight_mant)
                for f in ("kind", "in_shape", "out_shape", "weight_exp", "num_weight_bits",
                          "sign_mode", "num_message_bits", "stride", "padding", "dilation", "groups"):
                    assert getattr(sa, f) == getattr(sb, f), f
        for f in ("shape", "du", "dv", "vth", "scale_exp", "reset"):
            assert getattr(la.neuron, f) == getattr(lb.neuron, f), f
        for f in ("bias_mant", "bias_exp"):
            assert np.array_equal(getattr(la.neuron, f), getattr(lb.neuron, f)), f


def assert_in_hardware_range(ir: LoihiNetwork) -> None:
    for layer in ir.layers:
        n = layer.neuron
        assert 0 <= n.du <= LOIHI.decay_max and 0 <= n.dv <= LOIHI.decay_max
        assert 0 <= n.vth <= LOIHI.vth_max
        assert LOIHI.bias_mant_min <= np.min(n.bias_mant) <= np.max(n.bias_mant) <= LOIHI.bias_mant_max
        assert 0 <= np.min(n.bias_exp) <= np.max(n.bias_exp) <= LOIHI.bias_exp_max
        for s in (layer.synapse, layer.recurrent):
            if s is None:
                continue
            w = np.asarray(s.weight_mant)
            assert w.dtype == np.int64
            assert LOIHI.weight_min <= w.min() and w.max() <= LOIHI.weight_max
            assert LOIHI.weight_exp_min <= s.weight_exp <= LOIHI.weight_exp_max


def run_steps(net: nn.Module, x: torch.Tensor, extra: int) -> torch.Tensor:
    """Step a per-step module (init_hidden=True) over ``x`` plus ``extra`` zero steps."""
    snn_utils.reset(net)
    out = []
    with torch.no_grad():
        for t in range(x.shape[0] + extra):
            out.append(net(x[t] if t < x.shape[0] else torch.zeros_like(x[0])))
    return torch.stack(out)


def spikes(shape: tuple[int, ...], p: float = 0.4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def export_quiet(net, sample, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export(net, sample, **kw)


def check_round_trip(net: nn.Module, sample: torch.Tensor, x: torch.Tensor, tmp_path,
                     min_spikes: int = 0) -> LoihiNetwork:
    """export -> file -> read: identical registers; from_nir spikes == quantized net spikes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = prepare_qat(net, example_input=sample) if _is_float(net) else net
    ir = extract(qnet, sample)
    path = tmp_path / "net.nir"
    graph = export_quiet(net, sample, path=path)
    graph.infer_types()
    assert graph.check_types()
    read = nir.read(path)
    back = from_nir_graph(read)
    assert_same_ir(ir, back)
    assert_in_hardware_range(back)
    rebuilt = from_nir(path)
    assert_same_ir(ir, extract(rebuilt, sample))
    a = run_steps(qnet, x, len(ir.layers))
    b = run_steps(rebuilt, x, len(ir.layers))
    assert torch.equal(a, b)
    assert a.sum() >= min_spikes
    if x.dim() == 2 + len(ir.input_shape):  # batched: also the torch reference of the IR
        ref = simulate(back, x).output
        assert torch.equal(ref.to(a.dtype).reshape(a.shape), a)
    return ir


def _is_float(net: nn.Module) -> bool:
    from snntorch_loihi.export.api import needs_quantization

    return needs_quantization(net)


# ---- each layer type alone ---------------------------------------------------------------------
def _leaky(**kw):
    return snn.Leaky(beta=kw.pop("beta", 0.9), init_hidden=True, **kw)


CASES = {
    "linear-leaky": (lambda: nn.Sequential(nn.Linear(12, 7), _leaky(threshold=0.5)), (12,)),
    "linear-nobias-leaky": (lambda: nn.Sequential(nn.Linear(12, 7, bias=False), _leaky()), (12,)),
    "conv-leaky": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), _leaky(threshold=0.3)),
                   (2, 6, 6)),
    "linear-synaptic": (lambda: nn.Sequential(
        nn.Linear(12, 7), snn.Synaptic(alpha=0.7, beta=0.85, threshold=0.5, init_hidden=True)),
        (12,)),
    "rleaky": (lambda: nn.Sequential(
        nn.Linear(12, 7), snn.RLeaky(beta=0.9, linear_features=7, threshold=0.5, init_hidden=True)),
        (12,)),
    "rleaky-one-to-one": (lambda: nn.Sequential(
        nn.Linear(12, 7), snn.RLeaky(beta=0.9, V=torch.full((7,), 0.3), all_to_all=False,
                                     threshold=0.5, init_hidden=True)), (12,)),
    "avgpool-flatten": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), _leaky(threshold=0.3), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(18, 4), _leaky(threshold=0.3)), (1, 6, 6)),
    "sumpool": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), _leaky(threshold=0.3), QuantSumPool2d(3), nn.Flatten(),
        nn.Linear(8, 4), _leaky(threshold=0.6)), (1, 6, 6)),
    "identity-dropout": (lambda: nn.Sequential(
        nn.Linear(12, 7), nn.Identity(), _leaky(threshold=0.5), nn.Dropout(0.2), nn.Linear(7, 3),
        _leaky(threshold=0.3)), (12,)),
    "per-neuron-params": (lambda: nn.Sequential(
        nn.Linear(12, 7), snn.Leaky(beta=torch.full((7,), 0.8), threshold=torch.full((7,), 0.4),
                                    init_hidden=True)), (12,)),
    "readout-no-reset": (lambda: nn.Sequential(
        nn.Linear(12, 7), _leaky(threshold=0.5), nn.Linear(7, 3),
        _leaky(reset_mechanism="none")), (12,)),
}


@pytest.mark.parametrize("quant_aware", [False, True], ids=["float", "quant-aware"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_alone_round_trip(case, quant_aware, tmp_path):
    torch.manual_seed(0)
    make, shape = CASES[case]
    net = make().eval()
    sample = torch.zeros(2, *shape)
    if quant_aware:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = prepare_qat(net, example_input=sample)
    check_round_trip(net, sample, spikes((15, 2, *shape)), tmp_path)


def test_quant_aware_network_exports_its_own_registers_without_warning(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 6), _leaky(threshold=0.4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = prepare_qat(net)
    qnet[0].weight.data.mul_(1.1)  # training changed the weights after calibration
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = export(qnet, torch.zeros(10))
    regs = qnet[0].registers()
    meta = graph.nodes["1.synapse"].metadata["loihi"]
    assert np.array_equal(meta["weight_mant"], regs["weight_mant"].numpy())
    assert meta["weight_exp"] == regs["weight_exp"]
    n = qnet[1].registers()
    m = graph.nodes["1.neuron"].metadata["loihi"]
    assert (m["du"], m["dv"], m["vth"], m["scale_exp"]) == (n["du"], n["dv"], n["vth"], n["scale_exp"])
    check_round_trip(qnet, torch.zeros(10), spikes((10, 10)), tmp_path)


# ---- realistic stacks --------------------------------------------------------------------------
def test_mlp_scalar_beta_batched_sample(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True, threshold=0.5),
                        nn.Linear(32, 10), snn.Leaky(beta=0.9, init_hidden=True, threshold=0.3))
    with pytest.warns(QuantizationWarning, match=r"Leaky '1': beta 0.9 -> 0.899902 \(dv=410\)"):
        export(net, torch.zeros(8, 64))
    ir = check_round_trip(net, torch.zeros(8, 64), spikes((25, 8, 64), 0.3), tmp_path, min_spikes=5)
    assert ir.input_shape == (64,) and [la.name for la in ir.layers] == ["1", "3"]


def test_conv_net_with_pooling_and_flatten(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(24, 5), snn.Leaky(beta=0.9, threshold=0.2, init_hidden=True),
    ).eval()
    ir = check_round_trip(net, torch.zeros(3, 1, 12, 12), spikes((20, 3, 1, 12, 12), 0.5),
                          tmp_path)
    conv2 = ir.layers[1].synapse
    assert conv2.kind == "conv" and conv2.in_shape == (4, 12, 12) and conv2.stride == (2, 2)
    assert conv2.weight_mant.shape == (6, 4, 6, 6)              # 3x3 kernel over 2x2 pools
    assert ir.layers[2].synapse.in_shape == (6, 4, 4)           # pool and flatten folded
    assert ir.layers[2].synapse.weight_mant.shape == (5, 96)


def test_synaptic_stack(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), snn.Synaptic(alpha=0.8, beta=0.9, threshold=0.5,
                                                        init_hidden=True),
                        nn.Linear(16, 4), snn.Synaptic(alpha=0.5, beta=0.7, threshold=0.3,
                                                       init_hidden=True))
    ir = check_round_trip(net, torch.zeros(4, 20), spikes((25, 4, 20), 0.4), tmp_path, min_spikes=1)
    assert ir.layers[0].neuron.du == round(4096 * 0.2) - 1


def test_rleaky_stack(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), snn.RLeaky(beta=0.9, linear_features=16, threshold=0.5,
                                                      init_hidden=True),
                        nn.Linear(16, 4), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True))
    ir = check_round_trip(net, torch.zeros(4, 20), spikes((25, 4, 20), 0.4), tmp_path, min_spikes=1)
    assert ir.layers[0].recurrent is not None and ir.layers[0].recurrent.weight_mant.shape == (16, 16)


class TimeLoop(nn.Module):
    """A custom module whose forward loops over time with init_hidden=False neurons."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 8)
        self.lif1 = snn.Leaky(beta=0.9, threshold=0.4)
        self.fc2 = nn.Linear(8, 3)
        self.lif2 = snn.Leaky(beta=0.8, threshold=0.3)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


def test_custom_module_looping_over_time(tmp_path):
    torch.manual_seed(0)
    net = TimeLoop()
    sample = torch.zeros(1, 4, 10)  # one time step, batch 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = prepare_qat(net, example_input=sample)
    graph = export_quiet(net, sample, path=tmp_path / "t.nir")
    ir = from_nir_graph(nir.read(tmp_path / "t.nir"))
    assert_same_ir(extract(qnet, sample), ir)
    assert [la.name for la in ir.layers] == ["lif1", "lif2"] and ir.input_shape == (10,)
    x = spikes((20, 4, 10), 0.5)
    xpad = torch.cat([x, torch.zeros(2, 4, 10)])
    with torch.no_grad():
        a = qnet(xpad)
    b = run_steps(from_nir(graph), x, 2)
    assert torch.equal(a, b) and a.sum() > 0


# ---- errors ------------------------------------------------------------------------------------
def test_beta_above_one_is_an_error():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=1.2, init_hidden=True))
    with pytest.raises(RegisterRangeError, match=r"Leaky '1': beta must be in \[0, 1\], got 1.2"):
        export(net, torch.zeros(4))


def test_threshold_not_positive_is_an_error():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, threshold=0.0, init_hidden=True))
    with pytest.raises(RegisterRangeError, match=r"Leaky '1': threshold must be > 0, got 0"):
        export(net, torch.zeros(4))


def test_nan_weight_is_an_error():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
    net[0].weight.data[0, 0] = float("nan")
    with pytest.raises(RegisterRangeError, match=r"Linear '0': weight must be finite"):
        export(net, torch.zeros(4))


def test_threshold_too_large_for_17_bits_is_an_error():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, threshold=1e9, init_hidden=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RegisterRangeError, match=r"Leaky '1'.*threshold"):
            export(net, torch.zeros(4))


def test_unsupported_module_names_path_and_type():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2),
                        snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(UnsupportedModuleError, match=r"MaxPool2d '2'.*must be one of"):
        export(net, torch.zeros(1, 1, 6, 6))


def test_extract_rejects_unknown_module_in_quant_net():
    net = nn.Sequential(QuantLinear(4, 3, bias=False), nn.ReLU(), QuantAwareLeaky(0.9, init_hidden=True))
    with pytest.raises(UnsupportedModuleError, match=r"ReLU '1': module type must be one of .*QuantLinear"):
        extract(net, torch.zeros(4))


def test_extract_rejects_float_layers_with_a_hint():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(UnsupportedModuleError, match=r"Linear '0'.*use snntorch_loihi.export"):
        extract(net, torch.zeros(4))


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = QuantLinear(4, 3, bias=False)
        self.lif1 = QuantAwareLeaky(0.9, init_hidden=True)
        self.fc2 = QuantLinear(3, 2, bias=False)
        self.lif2 = QuantAwareLeaky(0.9, init_hidden=True)

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x)) * 2))


def test_extract_rejects_functional_ops_between_modules():
    net = Functional()
    net.apply(enable_quantization)
    with pytest.raises(UnsupportedModuleError, match=r"QuantAwareLeaky 'lif1' and QuantLinear 'fc2'"):
        extract(net, torch.zeros(4))


def test_synapse_without_neuron_is_an_error():
    net = nn.Sequential(QuantLinear(4, 3, bias=False), QuantAwareLeaky(0.9, init_hidden=True),
                        QuantLinear(3, 2, bias=False))
    with pytest.raises(UnsupportedModuleError, match=r"QuantLinear '2': the last synapse feeds no neuron"):
        extract(net, torch.zeros(4))


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = QuantLinear(4, 4, bias=False)
        self.lif1 = QuantAwareLeaky(0.9, init_hidden=True)
        self.lif2 = QuantAwareLeaky(0.9, init_hidden=True)

    def forward(self, x):
        return self.lif2(self.fc(self.lif1(self.fc(x))))


def test_extract_rejects_a_module_called_twice_in_one_step():
    net = Shared()
    net.apply(enable_quantization)
    with pytest.raises(UnsupportedModuleError, match=r"QuantLinear 'fc': a module must be called once"):
        extract(net, torch.zeros(4))


class InnerLoop(nn.Module):
    """snnTorch tutorial style: the same input step is presented num_steps times."""

    def __init__(self):
        super().__init__()
        self.fc1 = QuantLinear(4, 3, bias=False)
        self.lif1 = QuantAwareLeaky(0.9, init_hidden=True)
        self.fc2 = QuantLinear(3, 2, bias=False)
        self.lif2 = QuantAwareLeaky(0.9, init_hidden=True)

    def forward(self, x):
        return torch.stack([self.lif2(self.fc2(self.lif1(self.fc1(x)))) for _ in range(3)])


def test_extract_reads_the_first_step_of_an_inner_time_loop():
    net = InnerLoop()
    net.apply(enable_quantization)
    ir = extract(net, torch.zeros(2, 4))
    assert [la.name for la in ir.layers] == ["lif1", "lif2"] and ir.input_shape == (4,)


@pytest.mark.lava
def test_exported_conv_net_matches_lava_bit_for_bit(tmp_path):
    """The exported file (folded pooling, a recurrent layer) runs in Lava as the net does."""
    from snntorch_loihi.lava.convert import to_lava

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(24, 5), snn.RLeaky(beta=0.9, linear_features=5, threshold=0.2, init_hidden=True),
    ).eval()
    sample = torch.zeros(2, 1, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = prepare_qat(net, example_input=sample)
    export_quiet(net, sample, path=tmp_path / "c.nir")
    x = spikes((12, 2, 1, 12, 12), 0.5)
    expected = run_steps(qnet, x, 3)
    with to_lava(tmp_path / "c.nir", progress=False) as model:
        got = torch.as_tensor(model(x)).to(expected.dtype)
    assert torch.equal(got, expected) and expected.sum() > 0


def test_float_export_warns_per_layer_and_passes_on_semantics_warnings():
    from snntorch_loihi.errors import SemanticsChangeWarning

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        export(net, torch.zeros(6))
    assert any(w.category is SemanticsChangeWarning and "subtract" in str(w.message) for w in rec)
    msg = next(str(w.message) for w in rec if w.category is QuantizationWarning
               and "per layer" in str(w.message))
    assert "Synaptic '1': beta 0.9 -> 0.899902 (dv=410); alpha 0.8 -> 0.800049 (du=818)" in msg
    assert "threshold 1 -> 1" in msg and "weights '0' max |err|" in msg
    assert "reset subtract -> zero" in msg
