"""The runnable examples in examples/: each main(quick=True) runs and its claims hold."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads contending with other
    processes made a small conv net's backward ~50x slower (1.2 s vs 25 ms per batch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.lava
def test_quickstart_digits(tmp_path):
    result = load("quickstart_digits").main(quick=True, out=tmp_path)
    assert result["exact"]
    assert result["lava_mismatches"] == 0
    acc = result["accuracy"]
    assert acc["float snnTorch"] > 0.3 and acc["QAT fine-tuned (torch)"] > 0.3  # chance: 0.1
    assert (tmp_path / "digits.nir").stat().st_size > 0
    assert (tmp_path / "parity.png").stat().st_size > 0


@pytest.mark.lava
def test_conv_net_exact_on_lava_and_netx(tmp_path):
    result = load("conv_net").main(quick=True, out=tmp_path)
    assert result["exact"] == {"lava": True, "netx": True}
    assert result["accuracy"]["QAT fine-tuned (torch)"] > 0.3  # chance: 0.1
    assert all(regs["weight_exp"] == 0 for name, regs in result["registers"].items()
               if name in ("1.synapse", "4.synapse"))  # Lava's Conv has no weight exponent
    for name in ("conv.nir", "conv_netx.h5", "parity_lava.png", "parity_netx.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.lava
def test_why_parameters_shift(tmp_path):
    result = load("why_parameters_shift").main(quick=True, out=tmp_path)
    mism = result["mismatches"]
    assert result["exact"]
    assert mism["snntorch-loihi Lava vs its torch forward"] == [0, 0]
    assert sum(mism["naive Lava vs float snnTorch"]) > 0  # the naive conversion drifts
    assert sum(mism["naive Lava vs snntorch-loihi torch forward"]) > 0
    naive, ours = result["registers"]["layer 1"]["naive"], result["registers"]["layer 1"]["ours"]
    assert (naive["dv"], naive["du"], naive["vth"]) == (163, 4095, 255)  # int(0.04 * 4095), ...
    assert ours["dv"] == 164 and ours["du"] == 4095  # round(4096 * (1 - 0.96))
    assert (tmp_path / "why_parameters_shift.png").stat().st_size > 0
    assert (tmp_path / "float_net.nir").stat().st_size > 0


@pytest.mark.lava
def test_lightning_finetune(tmp_path):
    pytest.importorskip("lightning")
    result = load("lightning_finetune").main(quick=True, out=tmp_path)
    logged, history = result["logged"], result["history"]
    assert logged["ParityCheck"]["parity/exact"] == 1.0
    assert [h["frozen"] for h in history["QuantizationSchedule"]] == [False, True]
    assert logged["QuantizationSchedule"]["qat/frozen"] == 1.0
    assert [h["epoch"] for h in history["OverflowMonitor"]] == [0, 1]
    assert logged["OverflowMonitor"]["overflow/1/neurons"] == 64.0
    assert logged["ExportBest"]["export_best/score"] == pytest.approx(result["best"]["score"])
    assert result["accuracy"]["QAT fine-tuned (Lightning)"] > 0.3  # chance: 0.1
    for name in ("best.nir", "best.net", "best.json"):
        assert (tmp_path / "best" / name).stat().st_size > 0
    assert (tmp_path / "val_acc.png").stat().st_size > 0


@pytest.mark.lava
def test_temporal_synaptic_rleaky(tmp_path):
    result = load("temporal_synaptic_rleaky").main(quick=True, out=tmp_path)
    acc = result["accuracy"]
    assert result["exact"] and result["lava_mismatches"] == 0
    assert acc["memoryless baseline (float)"] < 0.35  # order is invisible without memory
    assert acc["Synaptic + RLeaky, float snnTorch"] > 0.5  # chance: 0.25; order alone: 0.5
    regs = result["registers"]
    assert regs["1"]["du"] < 4095  # a Synaptic current with memory
    assert regs["3"]["recurrent_nonzero"] > 0  # the RLeaky's recurrent Dense learned weights
    for name in ("temporal.nir", "parity.png", "training.png"):
        assert (tmp_path / name).stat().st_size > 0
