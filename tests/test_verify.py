"""verify: the quantization-aware torch forward (or simulate) vs Lava / netx, and the report."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
from test_verify_support import convnet, lava_children, mlp, overflow_net, spikes
from torch import nn

from snntorch_loihi.fixed.network import LayerTrace, SimResult, simulate
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.verify.report import ParityReport, compare_layer


def _leaky(beta: float = 0.9, **kw) -> snn.Leaky:
    return snn.Leaky(beta, init_hidden=True, reset_mechanism="zero", reset_delay=False, **kw)


def _prepare(net: nn.Module, **kw) -> nn.Module:
    from snntorch_loihi.qat import prepare_qat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat(net, **kw)


def _module(ir: LoihiNetwork) -> nn.Module:
    from snntorch_loihi.export import to_module

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_module(ir)


# ---- the report without Lava ------------------------------------------------------------------
def test_compare_layer_finds_the_first_divergence() -> None:
    s = torch.zeros(6, 2, 3, dtype=torch.int64)
    u = torch.arange(36).reshape(6, 2, 3)
    ref = LayerTrace(s, u, u.clone())
    s2, v2 = s.clone(), u.clone()
    s2[4, 1, 2] = 1
    v2[3, 0, 0] += 7
    p = compare_layer("l", ref, LayerTrace(s2, u.clone(), v2), wraps=2, sats=1)
    assert (p.spike_mismatches, p.first_divergence, p.max_abs_du, p.max_abs_dv) == (1, 3, 0, 7)
    assert not p.exact and p.current_wraps == 2 and p.voltage_saturations == 1
    assert compare_layer("l", ref, ref).exact


def test_report_prints_a_table_and_plots(tmp_path) -> None:
    net = mlp(0, bias=True)
    x = spikes((8, 2, 12))
    ref = simulate(net, x)
    hw = SimResult({k: LayerTrace(t.s.clone(), t.u, t.v) for k, t in ref.layers.items()})
    hw["out"].s[5, 0, 1] = 1 - hw["out"].s[5, 0, 1]
    layers = [compare_layer(k, ref[k], hw[k]) for k in ref]
    rep = ParityReport("simulate", "lava", 10, 2, 2, layers, ref, hw, net)
    text = str(rep)
    assert "MISMATCH" in text and "first step" in text and text.count("\n") >= 4
    assert not rep.exact and rep["h"].exact and rep["out"].first_divergence == 5
    rep.plot(tmp_path / "r.png", neurons={"h": [0, 1]})
    assert (tmp_path / "r.png").stat().st_size > 10_000


# ---- parity with Lava ---------------------------------------------------------------------------
@pytest.mark.lava
def test_mlp_leaky_synaptic_with_bias_is_exact(tmp_path) -> None:
    from snntorch_loihi.verify import verify

    torch.manual_seed(0)
    net = _prepare(nn.Sequential(nn.Linear(20, 16), _leaky(threshold=0.5), nn.Linear(16, 8),
                                 snn.Synaptic(0.7, 0.8, init_hidden=True, reset_mechanism="zero"),
                                 nn.Linear(8, 4), _leaky(0.8)))
    rep = verify(net, spikes((12, 3, 20)).float())
    assert rep.exact, str(rep)
    assert rep.reference == "torch" and rep.batch == 3 and rep.steps == 15
    assert all(p.spikes_ref > 0 for p in rep.layers)
    assert all(p.float_spike_mismatches is not None for p in rep.layers)
    assert "EXACT" in str(rep)
    rep.plot(tmp_path / "mlp.png")
    assert lava_children() == []


@pytest.mark.lava
def test_float_network_is_quantized_first_with_a_warning() -> None:
    from snntorch_loihi.errors import QuantizationWarning
    from snntorch_loihi.verify import verify

    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(10, 6), _leaky(0.9, threshold=0.5))
    with pytest.warns(QuantizationWarning, match="quantizing a copy"):
        rep = verify(net, spikes((8, 2, 10), p=0.5).float(), float_drift=False)
    assert rep.exact, str(rep)


@pytest.mark.lava
def test_conv_pool_flatten_is_exact() -> None:
    from snntorch_loihi.verify import verify

    torch.manual_seed(1)
    net = _prepare(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(0.85), nn.AvgPool2d(2),
                                 nn.Flatten(), nn.Linear(4 * 4 * 4, 5), _leaky(0.8)))
    rep = verify(net, spikes((6, 2, 2, 8, 8), p=0.5), float_drift=False)
    assert rep.exact, str(rep)
    assert rep.layers[0].shape == (4, 8, 8) and rep.layers[0].spikes_ref > 0


@pytest.mark.lava
def test_rleaky_recurrence_is_exact() -> None:
    from snntorch_loihi.verify import verify

    torch.manual_seed(2)
    net = _prepare(nn.Sequential(
        nn.Linear(12, 10),
        snn.RLeaky(0.9, linear_features=10, init_hidden=True, reset_mechanism="zero",
                   reset_delay=False),
        nn.Linear(10, 3), _leaky(0.8)))
    rep = verify(net, spikes((10, 2, 12), p=0.5), float_drift=False)
    assert rep.exact, str(rep)
    assert rep.net.layers[0].recurrent is not None and rep.layers[0].spikes_ref > 0


@pytest.mark.lava
@pytest.mark.parametrize("backend", ["lava", "netx"])
def test_wrapping_currents_and_saturating_voltages_are_exact(backend) -> None:
    from snntorch_loihi.verify import verify

    ir = overflow_net(graded=True)
    x = torch.full((6, 2, 6), 150.0)
    x[:, 1, ::2] = 0
    rep = verify(_module(ir), x, backend=backend, float_drift=False)
    assert rep.exact, str(rep)
    assert rep["wrap"].current_wraps > 0 and rep["wrap"].voltage_saturations > 0
    if backend == "lava":  # binary input, weight_exp = 7: a form only Lava processes hold
        rep = verify(overflow_net(), torch.ones(5, 1, 6), float_drift=False)
        assert rep.exact and rep.reference == "simulate" and rep.layers[0].current_wraps > 0


@pytest.mark.lava
@pytest.mark.parametrize("backend", ["lava", "netx"])
def test_graded_input_and_batches_on_one_network(backend) -> None:
    from snntorch_loihi.verify import verify

    ir = mlp(7, graded=8, bias=True)
    x = torch.randint(0, 30, (8, 4, 12), generator=torch.Generator().manual_seed(7)).float()
    rep = verify(_module(ir), x, backend=backend, float_drift=False)
    assert rep.exact, str(rep)
    assert rep.batch == 4 and rep.backend == backend


@pytest.mark.lava
def test_netx_backend_on_ir_and_conv() -> None:
    from snntorch_loihi.export import to_nir
    from snntorch_loihi.verify import verify

    rep = verify(to_nir(convnet(3, bias="channel")), spikes((5, 2, 2, 6, 5), p=0.5),
                 backend="netx", float_drift=False)
    assert rep.exact and rep.reference == "simulate", str(rep)
    rep = verify(_module(mlp(8, recurrent=True, bias=True, du=4095)), spikes((8, 2, 12), seed=8),
                 backend="netx", float_drift=False)
    assert rep.exact, str(rep)


def test_netx_backend_pins_the_clear_error() -> None:
    from snntorch_loihi.lava.netx import NetxError
    from snntorch_loihi.verify import verify

    torch.manual_seed(0)
    # the finest Lava calibration: weight_exp > 0 and free bias exponents, no netx form
    net = _prepare(nn.Sequential(nn.Linear(8, 4), _leaky()), netx_compatible=False)
    with pytest.raises(NetxError, match="for netx"):
        verify(net, spikes((4, 1, 8)).float(), backend="netx", float_drift=False)
    with pytest.raises(ValueError, match="backend must be 'lava' or 'netx'"):
        verify(net, spikes((4, 1, 8)).float(), backend="loihi")  # type: ignore[arg-type]


@pytest.mark.lava
def test_default_calibration_is_exact_through_netx() -> None:
    """prepare_qat's default (netx-compatible) registers: a trained-style net with biases,
    Synaptic and a conv + pool + flatten runs exactly through lava-dl's netx loader."""
    from snntorch_loihi.verify import verify

    torch.manual_seed(5)
    mlp_net = _prepare(nn.Sequential(nn.Linear(20, 16), _leaky(threshold=0.5), nn.Linear(16, 4),
                                     snn.Synaptic(0.7, 0.8, init_hidden=True,
                                                  reset_mechanism="zero")))
    rep = verify(mlp_net, spikes((10, 3, 20)).float(), backend="netx", float_drift=False)
    assert rep.exact and rep.backend == "netx", str(rep)
    conv = _prepare(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(0.85), nn.AvgPool2d(2),
                                  nn.Flatten(), nn.Linear(4 * 4 * 4, 5), _leaky(0.8)))
    rep = verify(conv, spikes((5, 2, 2, 8, 8), p=0.5), backend="netx", float_drift=False)
    assert rep.exact, str(rep)


# ---- the bug report: naive conversion drifts, snntorch-loihi is exact ---------------------------
def _naive_ir(fc1: nn.Linear, fc2: nn.Linear, beta: float, thr: float) -> LoihiNetwork:
    """The NIR paper script's recipe (LOIHI_FIXED_POINT.md): dv = int(dv * 4095),
    du = int(1.0 * 4095), vth = int(vth * 131071) >> 9, w = int(w * 256), two Dense."""
    dv = int((1 - beta) * 4095)
    vth = int(thr * 131071) >> 9
    layers = []
    for name, fc in (("h", fc1), ("out", fc2)):
        w = np.clip((fc.weight.detach().double() * 256).to(torch.int64).numpy(), -256, 255)
        n_out, n_in = w.shape
        layers.append(LoihiLayer(name, LoihiSynapse("dense", w, (n_in,), (n_out,)),
                                 LoihiNeuron((n_out,), int(1.0 * 4095), dv, vth)))
    return LoihiNetwork((fc1.in_features,), tuple(layers))


def _float_spikes(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    from snntorch import utils

    rec: list[list[torch.Tensor]] = [[], []]
    neurons = [m for m in net if isinstance(m, snn.Leaky)]
    hooks = [n.register_forward_hook(lambda m, i, o, k=k: rec[k].append(o.detach()))
             for k, n in enumerate(neurons)]
    utils.reset(net)
    with torch.no_grad():
        for t in range(x.shape[0]):
            net(x[t])
    for h in hooks:
        h.remove()
    return [torch.stack(r) for r in rec]


@pytest.mark.lava
def test_naive_conversion_drifts_while_snntorch_loihi_is_exact() -> None:
    from snntorch_loihi.lava.runner import LavaNetwork
    from snntorch_loihi.verify import verify

    torch.manual_seed(3)
    beta, thr = 0.96, 1.0
    fc1, fc2 = nn.Linear(20, 24, bias=False), nn.Linear(24, 5, bias=False)
    with torch.no_grad():
        fc1.weight.mul_(1.3)
    net = nn.Sequential(fc1, _leaky(beta, threshold=thr), fc2, _leaky(beta, threshold=thr))
    T, B = 40, 4
    x = spikes((T, B, 20), p=0.3, seed=3)
    float_s = _float_spikes(net, x.float())
    naive = _naive_ir(fc1, fc2, beta, thr)
    with LavaNetwork(naive, steps=T + 2, chunk=B, record=("s",), progress=False) as ln:
        lava_s = ln.run(x)
    # even with the two Dense delays accounted for, the naive registers drift
    drift = [int((lava_s[k].s[k + 1:k + 1 + T] != float_s[k]).sum()) for k in range(2)]
    assert drift[0] > 0, drift
    # the same float network through snntorch-loihi: the quantized forward IS what Lava runs
    rep = verify(_prepare(net), x.float(), float_drift=False)
    assert rep.exact, str(rep)
    assert lava_children() == []
