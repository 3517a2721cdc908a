"""The demo, shortened: every stage runs, files are written, torch and Lava agree exactly."""

from __future__ import annotations

import pytest

from snntorch_loihi.demo import DemoConfig, run_demo


@pytest.mark.lava
def test_demo_short(tmp_path):
    cfg = DemoConfig(out=tmp_path, num_steps=12, float_epochs=2, qat_epochs=1, lava_samples=12,
                     low_bits_epochs=1, low_bits_lava_samples=6, progress=False)
    result = run_demo(cfg)
    p = result["parity"]
    assert p["mismatching spikes"] == 0 and p["low-bit mismatching spikes"] == 0
    assert p["report exact (8 samples, all layers)"] and p["netx report exact"]
    acc = result["accuracy"]
    assert acc["Lava fixed_pt, 8-bit (12 samples)"] == acc["fine-tuned torch on the same 12 samples"]
    assert acc["float snnTorch"] > 0.3  # ten classes: chance is 0.1
    for f in ("digits.nir", "digits_netx.h5", "parity.png", "training.png", "digits_2bit.nir"):
        assert (tmp_path / f).stat().st_size > 0
