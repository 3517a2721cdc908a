"""Weight precision as a user choice, end to end: prepare_qat(weight_bits=...) -> one fine-tuning
step -> NIR metadata (num_weight_bits) -> Lava and netx, bit-exact with the torch forward."""

from __future__ import annotations

import warnings

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_loihi as sl
from snntorch_loihi.data import digits_spikes, temporal_spikes
from snntorch_loihi.export import from_nir_graph
from snntorch_loihi.fixed import truncate_weights
from snntorch_loihi.training import run_network


def _leaky() -> snn.Leaky:
    return snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False)


def _digits_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), _leaky(), nn.Linear(32, 10), _leaky())


def _one_step(qnet: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One quantization-aware fine-tuning step (the weights move; calibration is kept)."""
    import snntorch.functional as SF

    opt = torch.optim.Adam(qnet.parameters(), lr=1e-2)
    loss = SF.ce_rate_loss()(run_network(qnet, x, x.shape[0] + sl.delay_steps(qnet)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sl.freeze_calibration(qnet)


def _prepare(net: nn.Module, weight_bits, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = sl.prepare_qat(net, weight_bits=weight_bits)
    _one_step(qnet, x, y)
    return qnet.eval()


def _synapse_bits(graph, prefix: str = "") -> dict[str, int]:
    """``num_weight_bits`` of every synapse node, nested subgraphs (an RLeaky) included."""
    out = {}
    for name, node in graph.nodes.items():
        if hasattr(node, "nodes"):
            out.update(_synapse_bits(node, f"{prefix}{name}."))
        loihi = (getattr(node, "metadata", None) or {}).get("loihi", {})
        if "num_weight_bits" in loihi:
            out[prefix + name] = loihi["num_weight_bits"]
    return out


@pytest.fixture(scope="module")
def digits():
    x_tr, y_tr, x_te, _ = digits_spikes(10)
    return x_tr[:, :32], y_tr[:32], x_te[:, :4]


@pytest.mark.lava
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_bits_export_and_run_exactly_in_lava_and_netx(bits, digits) -> None:
    x_tr, y_tr, x_te = digits
    qnet = _prepare(_digits_mlp(), bits, x_tr, y_tr)
    for lin in (qnet[0], qnet[2]):
        assert lin.num_weight_bits == bits
        w = lin.weight.detach()
        assert bool((w > 0).any()) and bool((w < 0).any())   # mixed sign
    graph = sl.export(qnet, x_te[0, :1])
    assert set(_synapse_bits(graph).values()) == {bits}
    assert len(_synapse_bits(graph)) == 2
    ir = from_nir_graph(graph)
    for layer in ir.layers:
        mant = torch.as_tensor(layer.synapse.weight_mant)
        assert layer.synapse.num_weight_bits == bits
        assert layer.synapse.sign_mode == "mixed"
        # on Lava's grid at that precision (fixed points of its truncation), 2**bits levels
        assert torch.equal(truncate_weights(mant, bits, "mixed"), mant)
        assert len(mant.unique()) <= 2**bits
    for backend in ("lava", "netx"):
        report = sl.verify(qnet, x_te, backend=backend, float_drift=False)
        assert report.exact, f"{bits}-bit weights, {backend}:\n{report}"


@pytest.mark.lava
def test_per_layer_weight_bits_dict(digits) -> None:
    x_tr, y_tr, x_te = digits
    qnet = _prepare(_digits_mlp(), {"0": 3, "2": 6}, x_tr, y_tr)
    assert (qnet[0].num_weight_bits, qnet[2].num_weight_bits) == (3, 6)
    graph = sl.export(qnet, x_te[0, :1])
    assert sorted(_synapse_bits(graph).values()) == [3, 6]
    assert [layer.synapse.num_weight_bits for layer in from_nir_graph(graph).layers] == [3, 6]
    for backend in ("lava", "netx"):
        report = sl.verify(qnet, x_te, backend=backend, float_drift=False)
        assert report.exact, f"{backend}:\n{report}"


@pytest.mark.lava
def test_per_layer_weight_bits_dict_with_recurrence() -> None:
    """RLeaky's recurrent Dense has its own precision at '<path>.recurrent'; Synaptic output."""
    x_tr, y_tr, x_te, _ = temporal_spikes(20, 16, 4)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(16, 12),
        snn.RLeaky(beta=0.9, linear_features=12, init_hidden=True, reset_mechanism="zero",
                   reset_delay=False),
        nn.Linear(12, 4, bias=False),
        snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, reset_mechanism="zero",
                     reset_delay=False),
    )
    qnet = _prepare(net, {"0": 4, "1.recurrent": 2, "2": 5}, x_tr, y_tr)
    assert qnet[1].recurrent.num_weight_bits == 2
    graph = sl.export(qnet, x_te[0, :1])
    ir = from_nir_graph(graph)
    assert [layer.synapse.num_weight_bits for layer in ir.layers] == [4, 5]
    assert ir.layers[0].recurrent is not None and ir.layers[0].recurrent.num_weight_bits == 2
    assert sorted(_synapse_bits(graph).values()) == [2, 4, 5]
    report = sl.verify(qnet, x_te, backend="lava", float_drift=False)
    assert report.exact, str(report)
