"""Shared test set-up: Lava availability (fail, not skip, under CI) and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Small tensors: one intra-op thread is as fast, and far faster when another process (a Lava
# worker, a DDP rank) competes for the machine's two cores.
torch.set_num_threads(1)

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _lava_import_error() -> str | None:
    try:
        import lava.magma.core.run_configs  # noqa: F401
        import lava.proc.lif.process  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return f"{type(exc).__name__}: {exc}"
    return None


LAVA_ERROR = _lava_import_error()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``lava`` skip without Lava locally, and FAIL under CI (``CI`` is set)."""
    if LAVA_ERROR is None:
        return
    for item in items:
        if "lava" in item.keywords:
            if os.environ.get("CI"):
                item.add_marker(pytest.mark.usefixtures("_lava_required"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"Lava unavailable: {LAVA_ERROR}"))


@pytest.fixture
def _lava_required():
    pytest.fail(f"Lava is required under CI but cannot be imported: {LAVA_ERROR}")
