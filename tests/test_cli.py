"""The ``snntorch-loihi`` command line: inspect, verify, convert, and its bad-input messages."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_loihi as sl
from snntorch_loihi.cli import estimate_cores, main
from snntorch_loihi.export import from_nir_graph


@pytest.fixture(scope="module")
def nir_file(tmp_path_factory):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 16), snn.Leaky(beta=0.9, threshold=0.3, init_hidden=True),
                        nn.Linear(16, 4), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True))
    path = tmp_path_factory.mktemp("cli") / "net.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sl.export(net, torch.zeros(1, 12), path=path)
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_prints_registers_floats_and_cores(nir_file, capsys):
    code, out, _ = _run(capsys, "inspect", str(nir_file))
    assert code == 0
    ir = from_nir_graph(nir.read(str(nir_file)))
    for layer in ir.layers:
        line = next(ln for ln in out.splitlines() if ln.startswith(layer.name + " "))
        assert f" {layer.neuron.dv} " in line and f" {layer.neuron.vth} " in line
    assert "beta=0.8999" in out and "estimated Loihi 2 neuro-cores: 2" in out
    assert "assumes at most 8192 neurons" in out


def test_estimate_cores_counts_memory_and_neurons():
    assert estimate_cores(100, 100, 8) == 1
    assert estimate_cores(8193, 0, 8) == 2
    assert estimate_cores(10, 2 * 128 * 1024, 4) == 1
    assert estimate_cores(10, 2 * 128 * 1024 + 8, 8) == 3


@pytest.mark.lava
def test_verify_exact_and_plot(nir_file, tmp_path, capsys):
    x = (np.random.default_rng(0).random((10, 2, 12)) < 0.4).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, _ = _run(capsys, "verify", str(nir_file), "--input", str(tmp_path / "x.npy"),
                        "--plot", str(tmp_path / "p.png"))
    assert code == 0, out
    assert "EXACT" in out and (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.lava
def test_convert_writes_netx(nir_file, tmp_path, capsys):
    code, out, _ = _run(capsys, "convert", str(nir_file), "--netx", str(tmp_path / "n.h5"))
    assert code == 0 and (tmp_path / "n.h5").exists() and "wrote lava-dl netx file" in out


def test_missing_file(capsys):
    code, _, err = _run(capsys, "inspect", "nope.nir")
    assert code == 2
    assert err.strip() == "snntorch-loihi: error: file 'nope.nir' does not exist."


def test_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5 at all")
    code, _, err = _run(capsys, "inspect", str(bad))
    assert code == 2
    assert err.startswith(f"snntorch-loihi: error: file '{bad}' is not a readable NIR file (")


def test_unsupported_node(tmp_path, capsys):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "thr": nir.Threshold(np.ones(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "thr"), ("thr", "output")])
    path = tmp_path / "thr.nir"
    nir.write(str(path), g)
    code, _, err = _run(capsys, "inspect", str(path))
    assert code == 2
    assert f"snntorch-loihi: error: file '{path}': " in err
    assert "Threshold" in err


def test_verify_input_of_wrong_shape(nir_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((10, 2, 13), np.float32))
    code, _, err = _run(capsys, "verify", str(nir_file), "--input", str(tmp_path / "x.npy"))
    assert code == 2
    assert err.strip() == ("snntorch-loihi: error: input must have shape (T, 12) or (T, B, 12) "
                           "for this network, got (10, 2, 13).")


def test_verify_missing_input(nir_file, capsys):
    code, _, err = _run(capsys, "verify", str(nir_file), "--input", "missing.npy")
    assert code == 2
    assert err.strip() == "snntorch-loihi: error: input file 'missing.npy' does not exist."
