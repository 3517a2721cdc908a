"""LoihiNetwork <-> NIR: float correspondence, metadata schema, file round trip, type checks."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch

from snntorch_loihi.errors import QuantizationWarning, RegisterRangeError, UnsupportedModuleError
from snntorch_loihi.export import DT, from_nir_graph, to_nir
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.spec import LOIHI


def assert_same_ir(a: LoihiNetwork, b: LoihiNetwork) -> None:
    """Every register and shape equal (bias arrays compared after broadcasting)."""
    assert tuple(a.input_shape) == tuple(b.input_shape)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        for sa, sb in ((la.synapse, lb.synapse), (la.recurrent, lb.recurrent)):
            assert (sa is None) == (sb is None)
            if sa is None:
                continue
            assert np.array_equal(sa.weight_mant, sb.weight_mant)
            for f in ("kind", "in_shape", "out_shape", "weight_exp", "num_weight_bits", "sign_mode",
                      "num_message_bits", "stride", "padding", "dilation", "groups"):
                assert tuple(np.atleast_1d(getattr(sa, f))) == tuple(np.atleast_1d(getattr(sb, f))), f
        na, nb = la.neuron, lb.neuron
        assert tuple(na.shape) == tuple(nb.shape)
        for f in ("du", "dv", "vth", "scale_exp", "reset"):
            assert getattr(na, f) == getattr(nb, f), f
            assert type(getattr(nb, f)) in (int, str)
        for f in ("bias_mant", "bias_exp"):
            x = np.broadcast_to(np.asarray(getattr(na, f)), na.shape)
            y = np.broadcast_to(np.asarray(getattr(nb, f)), nb.shape)
            assert np.array_equal(x, y), f


def _net(seed: int = 0) -> LoihiNetwork:
    rng = np.random.default_rng(seed)
    conv = LoihiLayer(
        "conv1", LoihiSynapse("conv", rng.integers(-127, 128, (4, 2, 3, 3)) * 2, (2, 8, 8), (4, 6, 6)),
        LoihiNeuron((4, 6, 6), 4095, 300, 1000,
                    bias_mant=np.broadcast_to(np.arange(4).reshape(4, 1, 1) * 7, (4, 6, 6)).copy(),
                    bias_exp=np.full((4, 6, 6), 2), scale_exp=10))
    fc = LoihiLayer(
        "fc", LoihiSynapse("dense", rng.integers(-127, 128, (10, 144)) * 2, (4, 6, 6), (10,),
                           weight_exp=-2),
        LoihiNeuron((10,), 200, 100, 500, bias_mant=rng.integers(-4096, 4096, (10,)),
                    bias_exp=rng.integers(0, 8, (10,)), scale_exp=8),
        recurrent=LoihiSynapse("dense", rng.integers(0, 256, (10, 10)), (10,), (10,),
                               sign_mode="excitatory", weight_exp=3))
    out = LoihiLayer(
        "out", LoihiSynapse("dense", -rng.integers(0, 256, (3, 10)), (10,), (3,), sign_mode="inhibitory",
                            num_weight_bits=8),
        LoihiNeuron((3,), 4095, 0, LOIHI.vth_max, scale_exp=-3, reset="none"))
    return LoihiNetwork((2, 8, 8), (conv, fc, out))


def test_graph_passes_nir_type_checks():
    g = to_nir(_net())
    g.validate_structure()
    g.infer_types()
    assert g.check_types()
    assert [type(g.nodes[k]).__name__ for k in ("conv1.synapse", "conv1.neuron", "fc.flatten",
                                                 "fc.synapse", "fc", "out.synapse", "out.neuron")] \
        == ["Conv2d", "LIF", "Flatten", "Affine", "NIRGraph", "Affine", "LIF"]
    sub = g.nodes["fc"]
    assert isinstance(sub.nodes["neuron"], nir.CubaLIF) and isinstance(sub.nodes["w_rec"], nir.Linear)
    assert ("input", "neuron") in sub.edges and ("w_rec", "neuron") in sub.edges


def test_file_round_trip_gives_identical_registers(tmp_path):
    ir = _net()
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(ir))
    g = nir.read(path)
    assert list(g.nodes) == sorted(g.nodes)  # nir.read sorts: order must come from the edges
    back = from_nir_graph(g)
    assert_same_ir(ir, back)
    assert [layer.name for layer in back.layers] == ["conv1", "fc", "out"]
    back.validate()
    assert_same_ir(back, from_nir_graph(to_nir(back)))  # and again, in memory


def test_metadata_schema():
    g = to_nir(_net())
    m = g.nodes["conv1.neuron"].metadata["loihi"]
    assert set(m) == {"version", "du", "dv", "vth", "bias_mant", "bias_exp", "scale_exp", "reset"}
    assert m["version"] == 1 and isinstance(m["du"], int) and m["bias_mant"].dtype == np.int64
    assert m["bias_mant"].shape == (4, 6, 6)
    s = g.nodes["fc.synapse"].metadata["loihi"]
    assert set(s) == {"version", "weight_mant", "weight_exp", "num_weight_bits", "sign_mode",
                      "num_message_bits"}
    assert s["weight_mant"].dtype == np.int64 and s["sign_mode"] == "mixed"
    assert g.nodes["fc"].nodes["w_rec"].metadata["loihi"]["sign_mode"] == "excitatory"
    assert g.metadata["loihi"] == {"version": 1, "dt": DT}


def test_float_parameters_follow_the_correspondence():
    ir = _net()
    g = to_nir(ir)
    conv_n, fc_n = ir.layers[0].neuron, ir.layers[1].neuron
    lif = g.nodes["conv1.neuron"]
    assert np.allclose(lif.tau, DT * 4096 / 300) and np.allclose(lif.r, lif.tau / DT)
    assert np.all(lif.v_threshold == (1000 << 6) * 2.0**-10) and np.all(lif.v_reset == 0)
    # LIF bias (uniform per channel) goes to the conv bias: b = bias_mant * 2**(bias_exp - k)
    assert np.array_equal(g.nodes["conv1.synapse"].bias, np.arange(4) * 7 * 2.0 ** (2 - 10))
    assert np.all(lif.v_leak == 0)
    w = g.nodes["conv1.synapse"].weight
    assert np.array_equal(w, ir.layers[0].synapse.weight_mant * 2.0 ** (0 + 6 - 10))
    # CubaLIF: alpha = 1 - (du + 1)/4096, input scale w_in = tau_syn/dt, bias in v_leak = r * b
    cuba = g.nodes["fc"].nodes["neuron"]
    assert np.allclose(cuba.tau_syn, DT * 4096 / 201) and np.allclose(cuba.w_in, cuba.tau_syn / DT)
    b = np.asarray(fc_n.bias_mant) * 2.0 ** (np.asarray(fc_n.bias_exp) - 8)
    assert np.allclose(cuba.v_leak, b * 4096 / 100)
    assert np.all(g.nodes["fc.synapse"].bias == 0)
    assert np.array_equal(g.nodes["fc.synapse"].weight,
                          ir.layers[1].synapse.weight_mant * 2.0 ** (-2 + 6 - 8))
    assert np.array_equal(g.nodes["fc"].nodes["w_rec"].weight,
                          ir.layers[1].recurrent.weight_mant * 2.0 ** (3 + 6 - 8))
    # dv = 0 (beta = 1): tau = inf
    assert np.all(np.isinf(g.nodes["out.neuron"].tau))
    del conv_n


def test_float_graph_reproduces_snntorch_float_dynamics():
    """Euler steps of the NIR LIF with dt give v = beta*v + W s + b, the quantized float values."""
    rng = np.random.default_rng(3)
    syn = LoihiSynapse("dense", rng.integers(-127, 128, (5, 6)) * 2, (6,), (5,), weight_exp=-1)
    neu = LoihiNeuron((5,), 4095, 512, 300, bias_mant=rng.integers(-50, 50, (5,)),
                      bias_exp=np.full((5,), 1), scale_exp=9)
    g = to_nir(LoihiNetwork((6,), (LoihiLayer("l", syn, neu),)))
    aff, lif = g.nodes["l.synapse"], g.nodes["l.neuron"]
    s = rng.integers(0, 2, 6).astype(np.float64)
    v = rng.normal(size=5)
    i_in = aff.weight @ s + aff.bias
    v_nir = v + DT / lif.tau * ((lif.v_leak - v) + lif.r * i_in)
    beta = 1 - 512 / 4096
    b = neu.bias_mant * 2.0 ** (1 - 9)
    w = syn.weight_mant * 2.0 ** (-1 + 6 - 9)
    assert np.allclose(v_nir, beta * v + w @ s + b, rtol=0, atol=1e-12)


def _strip(node):
    if isinstance(node, nir.NIRGraph):
        for n in node.nodes.values():
            _strip(n)
    node.metadata = {}


def test_graph_without_metadata_is_quantized_with_a_warning():
    rng = np.random.default_rng(1)
    syn = LoihiSynapse("dense", rng.integers(-127, 128, (8, 6)) * 2, (6,), (8,), weight_exp=0)
    syn2 = LoihiSynapse("dense", rng.integers(-127, 128, (3, 8)) * 2, (8,), (3,), weight_exp=0)
    ir = LoihiNetwork((6,), (
        LoihiLayer("a", syn, LoihiNeuron((8,), 4095, 410, 1 << 15, scale_exp=21)),
        LoihiLayer("b", syn2, LoihiNeuron((3,), 1023, 819, 1 << 14, scale_exp=21)),
    ))
    g = to_nir(ir)
    _strip(g)
    with pytest.warns(QuantizationWarning, match="without metadata"):
        back = from_nir_graph(g)
    back.validate()
    for la, lb in zip(ir.layers, back.layers, strict=True):
        assert (la.neuron.du, la.neuron.dv) == (lb.neuron.du, lb.neuron.dv)
        k1, k2 = la.neuron.scale_exp, lb.neuron.scale_exp
        assert la.neuron.vth * 2.0**-k1 == lb.neuron.vth * 2.0**-k2  # same float threshold
        w1 = la.synapse.weight_mant * 2.0 ** (la.synapse.weight_exp - k1)
        w2 = lb.synapse.weight_mant * 2.0 ** (lb.synapse.weight_exp - k2)
        assert np.array_equal(w1, w2)  # weights already on the grid: no change


def test_foreign_graph_with_pooling_and_cubalif():
    rng = np.random.default_rng(2)
    tau = np.full((2, 4, 4), 5e-4)
    nodes = {
        "in": nir.Input(input_type=np.array([1, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.5, (2, 1, 1, 1)), stride=1,
                           padding=0, dilation=1, groups=1, bias=np.zeros(2)),
        "lif": nir.LIF(tau=np.full((2, 8, 8), 1e-3), r=np.full((2, 8, 8), 10.0),
                       v_leak=np.zeros((2, 8, 8)), v_threshold=np.ones((2, 8, 8))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0),
        "fc": nir.Linear(weight=rng.normal(0, 0.3, (3, 32))),
        "cuba": nir.CubaLIF(tau_syn=np.full(3, 2e-4), tau_mem=np.full(3, 1e-3),
                            r=np.full(3, 10.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
                            w_in=np.full(3, 2.0)),
        "out": nir.Output(output_type=np.array([3])),
    }
    del tau
    edges = [("in", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"), ("flat", "fc"),
             ("fc", "cuba"), ("cuba", "out")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir = from_nir_graph(g)
    ir.validate()
    assert ir.layers[0].neuron.dv == round(4096 * 0.1) and ir.layers[0].neuron.du == 4095
    assert ir.layers[1].neuron.du == 4096 // 2 - 1 and ir.layers[1].neuron.dv == round(4096 * 0.1)
    assert ir.layers[1].synapse.in_shape == (2, 8, 8)          # the pool is folded into it
    assert ir.layers[1].synapse.weight_mant.shape == (3, 128)


def test_branching_graph_is_rejected():
    g = to_nir(_net())
    g.edges.append(("conv1.neuron", "output"))
    with pytest.raises(UnsupportedModuleError, match="must feed exactly one node"):
        from_nir_graph(g)


def test_newer_schema_version_is_rejected():
    g = to_nir(_net())
    g.nodes["conv1.neuron"].metadata["loihi"]["version"] = 2
    with pytest.raises(RegisterRangeError, match="version must be <= 1"):
        from_nir_graph(g)


def test_out_of_range_register_in_file_is_rejected():
    g = to_nir(_net())
    g.nodes["conv1.neuron"].metadata["loihi"]["vth"] = LOIHI.vth_max + 1
    with pytest.raises(RegisterRangeError, match="vth must be in"):
        from_nir_graph(g)


def test_snntorch_export_fails_on_scalar_beta_where_ours_works(tmp_path):
    """The motivation: snnTorch 1.0's own exporter cannot export the usual scalar-beta net."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    from snntorch_loihi.export import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="type mismatch"):
            export_to_nir(net, torch.zeros(1, 4), ignore_dims=[0])
        with pytest.raises(ValueError, match="type mismatch"):
            export_to_nir(net, torch.zeros(1, 4))
        graph = export(net, torch.zeros(1, 4), path=tmp_path / "ok.nir")
    graph.infer_types()
    assert graph.check_types()
    assert nir.read(tmp_path / "ok.nir").nodes["1.neuron"].metadata["loihi"]["dv"] == 410


def test_rewriting_a_read_graph_keeps_registers(tmp_path):
    nir.write(tmp_path / "a.nir", to_nir(_net()))
    nir.write(tmp_path / "b.nir", nir.read(tmp_path / "a.nir"))
    assert_same_ir(_net(), from_nir_graph(nir.read(tmp_path / "b.nir")))


def test_grouped_conv_needs_type_check_off_when_reading(tmp_path):
    """nir 1.0.8 derives a Conv2d's input channels from weight.shape[1] (wrong for groups > 1)."""
    rng = np.random.default_rng(4)
    syn = LoihiSynapse("conv", rng.integers(-127, 128, (4, 1, 3, 3)) * 2, (2, 6, 6), (4, 4, 4), groups=2)
    ir = LoihiNetwork((2, 6, 6), (LoihiLayer("g", syn, LoihiNeuron((4, 4, 4), 4095, 100, 800)),))
    g = to_nir(ir)
    g.infer_types()
    assert g.check_types()
    nir.write(tmp_path / "g.nir", g)
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(tmp_path / "g.nir")
    assert_same_ir(ir, from_nir_graph(nir.read(tmp_path / "g.nir", type_check=False)))


def test_snntorch_reads_our_graph_with_the_same_float_parameters():
    import snntorch as snn
    from snntorch.import_nir import import_from_nir

    syn = LoihiSynapse("dense", np.arange(-6, 6).reshape(3, 4) * 2, (4,), (3,), weight_exp=-1)
    neu = LoihiNeuron((3,), 4095, 410, 1 << 15, bias_mant=np.array([1, -2, 3]), scale_exp=21)
    g = to_nir(LoihiNetwork((4,), (LoihiLayer("l", syn, neu),)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = import_from_nir(g)
    leaky = next(m for m in mod.modules() if isinstance(m, snn.Leaky))
    linear = next(m for m in mod.modules() if isinstance(m, torch.nn.Linear))
    assert torch.allclose(leaky.beta, torch.tensor(1 - 410 / 4096), rtol=0, atol=1e-7)
    assert torch.all(leaky.threshold == (1 << 15 << 6) * 2.0**-21)
    assert torch.equal(linear.weight, torch.tensor(syn.weight_mant * 2.0 ** (-1 + 6 - 21)).float())
    assert torch.equal(linear.bias, torch.tensor([1, -2, 3]) * 2.0**-21)


def test_graph_exported_by_snntorch_is_quantized():
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), snn.Leaky(beta=torch.full((5,), 0.875),
                                                             threshold=torch.ones(5),
                                                             reset_mechanism="zero",
                                                             init_hidden=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = export_to_nir(net, torch.zeros(1, 6), ignore_dims=[0])
    with pytest.warns(QuantizationWarning, match="without metadata"):
        ir = from_nir_graph(g)
    n = ir.layers[0].neuron
    assert (n.du, n.dv) == (4095, 512)
    assert (n.vth << 6) * 2.0**-n.scale_exp == 1.0
