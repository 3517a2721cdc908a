"""The curated top-level API: names resolve to the right objects in any import order."""

from __future__ import annotations

import subprocess
import sys

import snntorch_loihi as sl


def test_every_public_name_resolves():
    for name in sl.__all__:
        assert getattr(sl, name) is not None, name


def test_functions_are_not_shadowed_by_their_subpackages():
    script = (
        "import snntorch_loihi.export.api, snntorch_loihi.verify.parity\n"
        "import snntorch_loihi as sl, sys\n"
        "assert callable(sl.export) and callable(sl.verify), (sl.export, sl.verify)\n"
        "assert not any(m.startswith('lava') for m in sys.modules), 'Lava imported eagerly'\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
