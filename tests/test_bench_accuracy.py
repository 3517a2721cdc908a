"""bench/bench_accuracy.py --quick: every stage runs, Lava equals the fine-tuned torch forward."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_accuracy.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_naive_convert_follows_the_paper_recipe() -> None:
    import torch

    bench = _load()
    torch.manual_seed(0)
    net = bench.temporal_net(0.9, hidden=6)
    with torch.no_grad():
        net[0].weight[0, 0] = 0.30   # int(0.30 * 256) = 76
        net[0].weight[0, 1] = -2.0   # clipped to -256
    ir = bench.naive_convert(net, weight_bits=8)
    first, second = ir.layers
    assert first.synapse.weight_mant[0, 0] == 76 and first.synapse.weight_mant[0, 1] == -256
    assert first.neuron.dv == int(0.1 * 4095) and first.neuron.du == 4095
    assert first.neuron.vth == int(1.0 * 131071) >> 9
    assert first.recurrent is not None and second.recurrent is None
    assert second.neuron.du == int((1 - 0.8) * 4095)
    # at 2 bits Lava keeps multiples of 128 (mixed sign): the recipe wipes out small weights
    w2 = bench.naive_convert(net, weight_bits=2).layers[0].synapse.weight_mant
    assert set(w2.flatten().tolist()) <= {-256, -128, 0, 128}
    ir.validate()


@pytest.mark.lava
def test_quick_benchmark_writes_table_and_plot_and_lava_matches(tmp_path) -> None:
    rows = _load().main(["--quick", "--out", str(tmp_path), "--no-progress"])
    assert (tmp_path / "accuracy.md").stat().st_size > 0
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    table = (tmp_path / "accuracy.md").read_text()
    assert "digits MLP" in table and "temporal" in table
    assert len(rows) == 4   # 2 tasks x beta 0.9 x bits {8, 2}
    for r in rows:
        assert r["lava_subset"] == r["torch_subset"], r
        assert all(r["spikes_equal"]), r
