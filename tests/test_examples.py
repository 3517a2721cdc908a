"""The runnable examples in examples/: each main(quick=True) runs and its claims hold."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.lava
def test_quickstart_digits(tmp_path):
    result = load("quickstart_digits").main(quick=True, out=tmp_path)
    assert result["exact"]
    assert result["lava_mismatches"] == 0
    acc = result["accuracy"]
    assert acc["float snnTorch"] > 0.3 and acc["QAT fine-tuned (torch)"] > 0.3  # chance: 0.1
    assert (tmp_path / "digits.nir").stat().st_size > 0
    assert (tmp_path / "parity.png").stat().st_size > 0
