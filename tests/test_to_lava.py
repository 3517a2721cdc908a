"""to_lava: NIR graph -> a Lava model called like the training forward, on one compiled network."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from test_verify_support import lava_children, mlp, spikes
from torch import nn

from snntorch_loihi.errors import QuantizationWarning, RegisterRangeError
from snntorch_loihi.fixed.network import simulate

pytestmark = pytest.mark.lava


def _qnet(seed: int = 0) -> nn.Module:
    from snntorch_loihi.qat import prepare_qat

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(16, 12),
        snn.Leaky(0.9, threshold=0.5, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(12, 4),
        snn.Synaptic(0.6, 0.85, init_hidden=True, reset_mechanism="zero"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat(net)


def _graph(q: nn.Module) -> nir.NIRGraph:
    from snntorch_loihi.export import export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export(q, torch.zeros(1, 16))


def test_output_equals_quantized_forward_on_one_compiled_network() -> None:
    from snntorch_loihi.lava.convert import to_lava
    from snntorch_loihi.verify import record_torch

    q = _qnet()
    x = spikes((12, 3, 16), seed=1).float()
    with to_lava(_graph(q), progress=False) as model:
        out = model(x)
        assert out.shape == (12 + model.delay, 3, 4) and model.delay == 2
        ref = record_torch(q, x, 12 + model.delay)
        assert torch.equal(out.long(), ref[-1].s)
        assert out.sum() > 0
        out1 = model(x[:8, 1])                       # unbatched and shorter: same compiled net
        assert out1.shape == (10, 4)
        assert torch.equal(out1.long(), record_torch(q, x[:8, 1:2], 10)[-1].s[:, 0])
        assert model.compiles == 1
    assert lava_children() == []


def test_records_every_layer_like_simulate() -> None:
    from snntorch_loihi.lava.convert import to_lava

    net = mlp(3, bias=True, recurrent=True)
    x = spikes((9, 2, 12), seed=3)
    with to_lava(net, record=("s", "u", "v"), progress=False) as model:
        res = model.run(x)
    assert res.mismatches(simulate(net, x)) == []
    assert res["h"].u.shape == (11, 2, 10)


def test_float_graph_is_quantized_with_a_warning() -> None:
    from snntorch_loihi.lava.convert import to_lava

    rng = np.random.default_rng(0)
    n = 5
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([6])),
            "fc": nir.Affine(weight=rng.normal(0, 0.6, (n, 6)), bias=np.zeros(n)),
            "lif": nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                           v_threshold=np.ones(n)),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.warns(QuantizationWarning):
        model = to_lava(graph, progress=False)
    with model:
        out = model(spikes((6, 6), p=0.6))
    assert out.shape == (7, n)


def test_float_models_run_for_comparison() -> None:
    from snntorch_loihi.lava.convert import to_lava

    graph = _graph(_qnet(2))
    x = spikes((10, 2, 16), seed=2).float()
    with to_lava(graph, fixed_point=False, progress=False) as fmodel:
        f = fmodel(x)
    with to_lava(graph, progress=False) as model:
        q = model(x)
    assert f.shape == q.shape and f.dtype == torch.get_default_dtype()
    assert set(f.unique().tolist()) <= {0.0, 1.0}


def test_no_worker_outlives_a_run_that_raises(monkeypatch) -> None:
    from snntorch_loihi.lava.convert import to_lava
    from snntorch_loihi.lava.runner import LavaNetwork

    model = to_lava(mlp(4), progress=False)
    model(spikes((4, 2, 12)))                   # compiled and running
    assert lava_children() != []

    def boom(*args, **kwargs):
        raise RuntimeError("boom while reading the probes")

    monkeypatch.setattr(LavaNetwork, "_read", boom)
    with pytest.raises(RuntimeError, match="boom"):
        model(spikes((4, 2, 12)))
    assert lava_children() == []
    with pytest.raises(RegisterRangeError, match=r"x must have shape \(T, B, \*\(12,\)\)"):
        model(torch.zeros(4, 2, 7))
    model.close()
    assert lava_children() == []


def test_bad_arguments() -> None:
    from snntorch_loihi.lava.convert import to_lava

    with pytest.raises(TypeError, match="graph_or_ir must be a nir.NIRGraph"):
        to_lava(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="record must contain 's'"):
        to_lava(mlp(), record=("u",))
