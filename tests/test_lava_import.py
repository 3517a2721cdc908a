"""Lava imports even after something fixed multiprocessing's start method (tqdm does)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import snntorch_loihi as sl
import snntorch_loihi.lava  # before the bar: the runner must still cope when it loads Lava
from tqdm import tqdm
for _ in tqdm(range(2), disable=False):
    pass
import multiprocessing
assert multiprocessing.get_start_method(allow_none=True) is not None
from snntorch_loihi.lava import runner  # noqa: F401
print(sl.to_lava.__name__)
"""


@pytest.mark.lava
def test_lava_imports_after_a_progress_bar():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "to_lava" in out.stdout
