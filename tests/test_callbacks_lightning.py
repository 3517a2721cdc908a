"""The Lightning adapters: a CPU Trainer with every callback, checkpoint resumption, stopping,
errors, and DDP on two CPU processes (gloo) with the rank-zero work done once."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

lightning = pytest.importorskip("lightning")
import lightning.pytorch as L  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from test_callbacks_task import digits, direct_counts, loss_fn, make_net, steps_of  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from snntorch_loihi.callbacks import Callback, ParityMismatchError  # noqa: E402
from snntorch_loihi.callbacks import lightning as slc  # noqa: E402
from snntorch_loihi.export import extract  # noqa: E402
from snntorch_loihi.nn import QuantLinear, QuantNeuronMixin  # noqa: E402
from snntorch_loihi.training import run_network  # noqa: E402

TESTS = Path(__file__).parent


class LitDigits(L.LightningModule):
    """A LightningModule holding the quantization-aware net at ``self.net``."""

    def __init__(self, net, steps, lr=5e-3):
        super().__init__()
        self.net, self.steps, self.lr, self.loss_fn = net, steps, lr, loss_fn()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(run_network(self.net, x.transpose(0, 1), self.steps), y)
        self.log("loss", loss, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        spk = run_network(self.net, x.transpose(0, 1), self.steps)
        acc = (spk.sum(0).argmax(-1) == y).float().mean()
        self.log("val_acc", acc, on_epoch=True, batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), self.lr)


def loaders():
    x, y, xv, yv = digits()
    train = DataLoader(TensorDataset(x.transpose(0, 1), y), batch_size=64)
    val = DataLoader(TensorDataset(xv.transpose(0, 1), yv), batch_size=64)
    return train, val


def trainer(tmp_path, max_epochs, callbacks, **kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, callbacks=callbacks,
                     enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, **kw)


class ModeRecorder(L.Callback):
    """Records the layers' modes at each train epoch start (after the schedule, listed first)."""

    def __init__(self):
        self.modes = []

    def on_train_epoch_start(self, trainer, pl_module):
        net = pl_module.net
        syn = {m.quantized for m in net.modules() if isinstance(m, QuantLinear)}
        neu = {m.quantized for m in net.modules() if isinstance(m, QuantNeuronMixin)}
        self.modes.append((syn.pop(), neu.pop()))


def fake_verify_factory(calls, exact=True):
    def fake_verify(net, inputs, backend="lava", float_drift=True):
        calls.append(backend)
        mism = 0 if exact else 5
        layers = [SimpleNamespace(name=n, spike_mismatches=mism, first_divergence=None)
                  for n in ("1", "3")]
        return SimpleNamespace(exact=exact, layers=layers)

    return fake_verify


def all_callbacks(tmp_path, xv, **parity):
    return [
        slc.QuantizationSchedule(float_epochs=1, freeze_epoch=2, net_attr="net"),
        slc.OverflowMonitor(xv[:, :8], warn_above=None, net_attr="net"),
        slc.ParityCheck(xv[:, :2], every=2, net_attr="net", **parity),
        slc.ExportBest(tmp_path / "best", monitor="val_acc", sample=xv[0, :1], netx=False,
                       net_attr="net"),
    ]


def test_trainer_with_every_callback(tmp_path, monkeypatch):
    verify_mod = importlib.import_module("snntorch_loihi.verify")  # the module, not sl.verify

    calls: list = []
    monkeypatch.setattr(verify_mod, "verify", fake_verify_factory(calls))
    _, _, xv, _ = digits()
    net = make_net()
    callbacks = all_callbacks(tmp_path, xv)
    recorder = ModeRecorder()
    tr = trainer(tmp_path, 3, [*callbacks, recorder], logger=CSVLogger(tmp_path, name="csv"))
    tr.fit(LitDigits(net, steps_of(net)), *loaders())
    schedule, monitor, parity, best = (cb.callback for cb in callbacks)
    assert recorder.modes == [(False, False), (True, True), (True, True)]
    assert schedule.frozen_at == 2 and net[1].calibration_frozen
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]
    sample = xv[:, :8]
    want = direct_counts(extract(net, sample[0]), sample)  # the net the last check saw
    last = monitor.history[-1]["layers"]
    assert {k: {c: last[k][c] for c in want[k]} for k in want} == want
    assert calls == ["lava"] and [h["epoch"] for h in parity.history] == [1]
    assert best.best_epoch is not None and (tmp_path / "best" / "best.nir").exists()
    assert best.best_score == pytest.approx(max(
        float(r["val_acc"]) for r in _csv_rows(tmp_path) if r.get("val_acc")))
    metrics = tr.callback_metrics
    assert float(metrics["qat/frozen"]) == 1.0
    assert float(metrics["overflow/1/current_wraps"]) == last["1"]["current_wraps"]
    assert float(metrics["parity/exact"]) == 1.0
    rows = _csv_rows(tmp_path)
    assert any(r.get("parity/exact") == "1.0" for r in rows)
    assert sum(1 for r in rows if r.get("overflow/3/never_fire")) == 3


def _csv_rows(tmp_path):
    (path,) = tmp_path.glob("csv/*/metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


def test_resume_from_checkpoint_restores_callback_state(tmp_path, monkeypatch):
    verify_mod = importlib.import_module("snntorch_loihi.verify")  # the module, not sl.verify

    calls: list = []
    monkeypatch.setattr(verify_mod, "verify", fake_verify_factory(calls))
    _, _, xv, _ = digits()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = all_callbacks(tmp_path, xv)
    net = make_net()
    trainer(tmp_path, 2, [*first, ckpt], enable_checkpointing=True).fit(
        LitDigits(net, steps_of(net)), *loaders())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["callbacks"]
    assert {k.split("{")[0] for k in saved} >= {"QuantizationSchedule", "OverflowMonitor",
                                                 "ParityCheck", "ExportBest"}

    second = all_callbacks(tmp_path, xv)
    net2 = make_net(seed=1)
    tr = trainer(tmp_path, 3, second)
    tr.fit(LitDigits(net2, steps_of(net2)), *loaders(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    schedule, monitor, parity, best = (cb.callback for cb in second)
    assert [h["epoch"] for h in schedule.history] == [0, 1, 2]
    assert schedule.frozen_at == 2
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]
    assert [h["epoch"] for h in parity.history] == [1]  # epoch 1 from the checkpoint
    before, last_acc = first[3].callback, float(tr.callback_metrics["val_acc"])
    if last_acc > before.best_score:  # epoch 2 improved on the restored best
        assert (best.best_epoch, best.writes) == (2, before.writes + 1)
    else:  # the restored best stands
        assert (best.best_epoch, best.writes) == (before.best_epoch, before.writes)
    assert best.best_score == pytest.approx(max(before.best_score, last_acc))


@pytest.mark.lava
def test_trainer_parity_check_runs_lava(tmp_path):
    _, _, xv, _ = digits()
    net = make_net()
    callbacks = [slc.QuantizationSchedule(float_epochs=0, net_attr="net"),
                 slc.ParityCheck(xv[:, :2], every=1, raise_on_mismatch=True, net_attr="net")]
    tr = trainer(tmp_path, 2, callbacks)
    tr.fit(LitDigits(net, steps_of(net)), *loaders())
    history = callbacks[1].callback.history
    assert [(h["epoch"], h["exact"]) for h in history] == [(0, True), (1, True)]
    assert float(tr.callback_metrics["parity/exact"]) == 1.0
    assert float(tr.callback_metrics["parity/3/mismatches"]) == 0.0


def test_callbacks_right_after_training_without_validation(tmp_path):
    """No no-grad validation forward in between: the net still holds the last batch's graph."""
    _, _, xv, _ = digits()
    net = make_net()
    callbacks = [slc.QuantizationSchedule(float_epochs=0, net_attr="net"),
                 slc.OverflowMonitor(xv[:, :4], warn_above=None, net_attr="net"),
                 slc.ExportBest(tmp_path, monitor="loss", mode="min", sample=xv[0, :1],
                                netx=False, net_attr="net")]
    trainer(tmp_path, 1, callbacks).fit(LitDigits(net, steps_of(net)), loaders()[0])
    assert len(callbacks[1].callback.history) == 1 and (tmp_path / "best.nir").exists()


def test_monitor_stops_the_trainer(tmp_path):
    _, _, xv, _ = digits()
    net = make_net()
    mon = slc.OverflowMonitor(xv[:, :8], warn_above=None, stop_above=0, watch="never_fire",
                              net_attr="net")
    tr = trainer(tmp_path, 5, [mon])
    tr.fit(LitDigits(net, steps_of(net)), *loaders())
    assert mon.callback.history[0]["layers"]["1"]["never_fire"] > 0
    assert tr.current_epoch == 1 and len(mon.callback.history) == 1


def test_parity_mismatch_raises_through_the_trainer(tmp_path, monkeypatch):
    verify_mod = importlib.import_module("snntorch_loihi.verify")  # the module, not sl.verify

    monkeypatch.setattr(verify_mod, "verify", fake_verify_factory([], exact=False))
    _, _, xv, _ = digits()
    net = make_net()
    check = slc.ParityCheck(xv[:, :2], raise_on_mismatch=True, net_attr="net")
    with pytest.raises(ParityMismatchError, match=r"epoch 0: .*got spike mismatches"):
        trainer(tmp_path, 2, [check]).fit(LitDigits(net, steps_of(net)), *loaders())


class BatchCounter(Callback):
    def __init__(self):
        self.losses, self.started = [], 0

    def on_train_start(self, net):
        self.started += 1

    def on_batch_end(self, net, epoch, batch, loss):
        self.losses.append((epoch, batch, loss))


def test_generic_adapter_forwards_batches_and_keys_tell_callbacks_apart(tmp_path):
    _, _, xv, _ = digits()
    counter = BatchCounter()
    net = make_net()
    trainer(tmp_path, 2, [slc.LightningCallback(counter, net_attr="net")]).fit(
        LitDigits(net, steps_of(net)), *loaders())
    assert counter.started == 1
    assert [(e, b) for e, b, _ in counter.losses] == [(e, b) for e in range(2) for b in range(3)]
    assert all(isinstance(loss, float) and loss > 0 for *_, loss in counter.losses)
    a = slc.OverflowMonitor(xv[:, :2], every=1, net_attr="net")
    b = slc.OverflowMonitor(xv[:, :2], every=2, net_attr="net")
    assert a.state_key != b.state_key and "every" in a.state_key


def test_adapter_errors(tmp_path):
    with pytest.raises(TypeError, match=r"callback must be a snntorch_loihi.callbacks.Callback, "
                                        r"got ModelCheckpoint"):
        slc.LightningCallback(ModelCheckpoint())
    with pytest.raises(TypeError, match=r"net_attr must be an attribute name or None, got 3"):
        slc.LightningCallback(Callback(), net_attr=3)
    with pytest.raises(ValueError, match=r"float_epochs must be a non-negative integer .*got -1"):
        slc.QuantizationSchedule(float_epochs=-1)
    net = make_net()
    bad = slc.QuantizationSchedule(float_epochs=1, net_attr="model")
    with pytest.raises(ValueError, match=r"net_attr must name the LightningModule's attribute "
                                         r"holding the network, got 'model'"):
        trainer(tmp_path, 1, [bad]).fit(LitDigits(net, steps_of(net)), *loaders())


def test_missing_lightning_gives_a_clear_error(monkeypatch):
    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "snntorch_loihi.callbacks.lightning")
    with pytest.raises(ImportError, match=r"needs Lightning \(lightning>=2.0\).*pip install "
                                          r"'snntorch-loihi\[lightning\]'"):
        importlib.import_module("snntorch_loihi.callbacks.lightning")
    import snntorch_loihi.callbacks  # the plain callbacks do not need Lightning

    assert snntorch_loihi.callbacks.QuantizationSchedule


DDP_SCRIPT = """
import importlib, json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
out = Path(sys.argv[1])

import lightning.pytorch as L
import torch
from lightning.pytorch.strategies import DDPStrategy
verify_mod = importlib.import_module("snntorch_loihi.verify")  # the module, not sl.verify
from snntorch_loihi.callbacks import lightning as slc
from test_callbacks_lightning import LitDigits, fake_verify_factory, loaders, ModeRecorder
from test_callbacks_task import digits, make_net, steps_of

mode = os.environ.get("CB_MODE", "stand-in")
run_verify = verify_mod.verify if mode == "lava" else fake_verify_factory([], mode != "mismatch")
def marked_verify(*args, **kwargs):  # Lava (or its stand-in), leaving one marker per call
    with open(out / "verify_calls.txt", "a") as f:
        f.write(os.environ.get("LOCAL_RANK", "0") + "\\n")
    return run_verify(*args, **kwargs)
verify_mod.verify = marked_verify

_, _, xv, _ = digits()
net = make_net()
callbacks = [
    slc.QuantizationSchedule(float_epochs=1, net_attr="net"),
    slc.OverflowMonitor(xv[:, :8], warn_above=None, net_attr="net"),
    slc.ParityCheck(xv[:, :2], every=1, raise_on_mismatch=mode == "mismatch", net_attr="net"),
    slc.ExportBest(out / "best", sample=xv[0, :1], netx=False, net_attr="net"),
]
recorder = ModeRecorder()
trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2,
                    strategy=DDPStrategy(process_group_backend="gloo"), callbacks=[*callbacks, recorder],
                    enable_progress_bar=False, enable_model_summary=False, logger=False,
                    enable_checkpointing=False, default_root_dir=out)
trainer.fit(LitDigits(net, steps_of(net)), *loaders())
schedule, monitor, parity, best = (cb.callback for cb in callbacks)
result = dict(rank=trainer.global_rank, modes=recorder.modes, monitor=len(monitor.history),
              parity=len(parity.history), writes=best.writes,
              exact=[h["exact"] for h in parity.history], parity_history=parity.history,
              metrics={{k: float(v) for k, v in trainer.callback_metrics.items()}})
(out / f"rank{{trainer.global_rank}}.json").write_text(json.dumps(result))
"""


def _run_ddp(tmp_path, mode):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(TESTS))))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "CB_MODE": mode}
    env.pop("LOCAL_RANK", None)
    return subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=TESTS.parent,
                          env=env, capture_output=True, text=True, timeout=300)


def test_ddp_mismatch_raises_on_every_rank_without_hanging(tmp_path):
    proc = _run_ddp(tmp_path, "mismatch")
    assert proc.returncode != 0
    assert proc.stderr.count("ParityMismatchError: ParityCheck: epoch 0") >= 2, proc.stderr[-4000:]
    assert (tmp_path / "verify_calls.txt").read_text().split() == ["0"]
    assert not list(tmp_path.glob("rank*.json"))


@pytest.mark.parametrize("real_lava", [False, pytest.param(True, marks=pytest.mark.lava)],
                         ids=["stand-in", "lava"])
def test_ddp_two_cpu_processes_do_rank_zero_work_once(tmp_path, real_lava):
    proc = _run_ddp(tmp_path, "lava" if real_lava else "stand-in")
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    # the schedule switched every replica
    assert r0["modes"] == r1["modes"] == [[False, False], [True, True]]
    # monitoring, parity (the Lava stand-in) and the files: rank zero only, once per epoch
    assert (tmp_path / "verify_calls.txt").read_text().split() == ["0", "0"]
    assert (r0["monitor"], r0["parity"]) == (2, 2) and (r1["monitor"], r1["parity"]) == (0, 0)
    assert r0["exact"] == [True, True] and r1["exact"] == []
    assert r0["writes"] >= 1 and r1["writes"] == 0
    assert (tmp_path / "best" / "best.nir").exists()
    # every rank logged the broadcast values
    for key in ("parity/exact", "overflow/1/current_wraps", "qat/synapses"):
        assert r0["metrics"][key] == r1["metrics"][key]
