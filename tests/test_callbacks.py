"""Training-loop callbacks in a plain loop: protocol, schedule, overflow monitor, parity, export."""

from __future__ import annotations

import importlib
import json
import warnings
from types import SimpleNamespace

import nir
import numpy as np
import pytest
import torch
from test_callbacks_task import (
    digits,
    direct_counts,
    loss_fn,
    make_net,
    make_netx_net,
    steps_of,
)

from snntorch_loihi.callbacks import (
    Callback,
    CallbackList,
    ExportBest,
    OverflowMonitor,
    OverflowWarning,
    ParityCheck,
    ParityMismatchError,
    QuantizationSchedule,
    count_overflows,
)
from snntorch_loihi.callbacks.export_best import NetxExportWarning
from snntorch_loihi.callbacks.overflow import clipped_per_layer
from snntorch_loihi.export import extract
from snntorch_loihi.fixed import weight_grid
from snntorch_loihi.ir import LoihiLayer, LoihiNetwork, LoihiNeuron, LoihiSynapse
from snntorch_loihi.nn import QuantLinear, QuantNeuronMixin
from snntorch_loihi.training import accuracy, train_epoch


# ---- protocol -------------------------------------------------------------------------------
class Recorder(Callback):
    def __init__(self, name, log, stop_at=None):
        self.name, self.log, self.stop_at, self.count = name, log, stop_at, 0

    def on_train_start(self, net):
        self.log.append((self.name, "train_start"))

    def on_epoch_start(self, net, epoch):
        self.log.append((self.name, "epoch_start", epoch))

    def on_batch_end(self, net, epoch, batch, loss):
        self.count += 1

    def on_epoch_end(self, net, epoch, metrics):
        self.log.append((self.name, "epoch_end", epoch, metrics["loss"]))
        return epoch == self.stop_at

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_callback_list_calls_every_callback_in_order_and_any_stop_stops():
    log: list = []
    cbs = CallbackList([Recorder("a", log, stop_at=1), Recorder("b", log)])
    net = torch.nn.Linear(1, 1)
    cbs.on_train_start(net)
    for epoch in range(5):
        cbs.on_epoch_start(net, epoch)
        cbs.on_batch_end(net, epoch, 0, 0.5)
        if cbs.on_epoch_end(net, epoch, {"loss": 0.5}):
            break
    assert epoch == 1 and cbs.stop_requested
    assert log[:3] == [("a", "train_start"), ("b", "train_start"), ("a", "epoch_start", 0)]
    assert log[-2:] == [("a", "epoch_end", 1, 0.5), ("b", "epoch_end", 1, 0.5)]  # b still ran
    state = cbs.state_dict()
    assert state == {"0:Recorder": {"count": 2}, "1:Recorder": {"count": 2}}
    fresh = CallbackList([Recorder("a", []), Recorder("b", [])])
    fresh.load_state_dict(state)
    assert [cb.count for cb in fresh] == [2, 2]


def test_callback_list_errors_name_what_was_given():
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a snntorch_loihi.callbacks"
                                        r".Callback, got int"):
        CallbackList([Callback(), 3])
    with pytest.raises(ValueError, match=r"state must hold the callbacks \['0:Callback'\], got "
                                         r"\['0:Recorder'\]"):
        CallbackList([Callback()]).load_state_dict({"0:Recorder": {}})


# ---- QuantizationSchedule ---------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "table"), [
    (dict(float_epochs=2), [(0, 0, 0), (0, 0, 0), (1, 1, 0), (1, 1, 0)]),
    (dict(float_epochs=1, freeze_epoch=2, staged=True), [(0, 0, 0), (1, 0, 0), (1, 1, 1), (1, 1, 1)]),
    (dict(float_epochs=0, staged=3), [(1, 0, 0), (1, 0, 0), (1, 0, 0), (1, 1, 0)]),
])
def test_schedule_phase_table(kwargs, table):
    s = QuantizationSchedule(**kwargs)
    got = [(int(p.synapses), int(p.neurons), int(p.frozen)) for p in map(s.phase, range(4))]
    assert got == table


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(float_epochs=-1), r"float_epochs must be a non-negative integer .*got -1"),
    (dict(float_epochs=1.5), r"float_epochs must be a non-negative integer .*got 1.5"),
    (dict(float_epochs=2, freeze_epoch=1), r"freeze_epoch must be >= float_epochs .*got "
                                           r"freeze_epoch=1 with float_epochs=2"),
    (dict(freeze_epoch=-3), r"freeze_epoch must be a non-negative integer .*got -3"),
    (dict(float_epochs=2, staged=1), r"staged \(the epoch neurons are quantized\) must be >= "
                                     r"float_epochs, got staged=1"),
    (dict(staged=-1), r"staged must be a non-negative integer .*got -1"),
])
def test_schedule_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizationSchedule(**kwargs)


def _modes(net):
    syn = {m.quantized for m in net.modules() if isinstance(m, QuantLinear)}
    neu = {m.quantized for m in net.modules() if isinstance(m, QuantNeuronMixin)}
    assert len(syn) == 1 and len(neu) == 1, "all layers of a kind switch together"
    return syn.pop(), neu.pop()


def test_schedule_switches_staged_then_recalibrates_until_frozen():
    net = make_net()
    s = QuantizationSchedule(float_epochs=1, freeze_epoch=3, staged=True)
    modes, frozen, scale = [], [], []
    for epoch in range(5):
        with torch.no_grad():  # pretend training doubled the first layer's weights
            net[0].weight.mul_(2.0)
        s.on_epoch_start(net, epoch)
        modes.append(_modes(net))
        frozen.append(net[1].calibration_frozen)
        scale.append(net[1].scale_exp)
    assert modes == [(False, False), (True, False), (True, True), (True, True), (True, True)]
    assert frozen == [False, False, False, True, True]
    assert s.frozen_at == 3
    # recalibrated while quantized and unfrozen (the scale follows the growing weights), then fixed
    assert scale[1] > scale[2] > scale[3] == scale[4]
    assert [h["calibrated"] for h in s.history] == [False, True, True, True, False]
    assert s.log_dict() == {"qat/synapses": 1.0, "qat/neurons": 1.0, "qat/frozen": 1.0}


def test_schedule_state_resumes_without_refreezing():
    net = make_net()
    s = QuantizationSchedule(float_epochs=0, freeze_epoch=1)
    for epoch in range(2):
        s.on_epoch_start(net, epoch)
    resumed = QuantizationSchedule(float_epochs=0, freeze_epoch=1)
    resumed.load_state_dict(s.state_dict())
    net2 = make_net()  # a net whose calibration is not frozen: the schedule must not freeze again
    resumed.on_epoch_start(net2, 2)
    assert resumed.frozen_at == 1 and not net2[1].calibration_frozen
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert _modes(net2) == (True, True)


# ---- overflow counting --------------------------------------------------------------------------
def _overflowing_ir() -> LoihiNetwork:
    rng = np.random.default_rng(0)
    w0 = rng.integers(-100, 255, (6, 5)) // 2 * 2           # mixed-sign grid values
    l0 = LoihiLayer("a", LoihiSynapse("dense", w0, (5,), (6,), weight_exp=6),
                    LoihiNeuron((6,), du=100, dv=10, vth=60000,
                                bias_mant=np.full(6, 4000), bias_exp=np.full(6, 7)))
    w1 = np.stack([np.full(6, 254), rng.integers(-256, 255, 6) // 2 * 2, np.full(6, 40)])
    rec = LoihiSynapse("dense", np.diag([254, -256, 100]), (3,), (3,), weight_exp=7)
    l1 = LoihiLayer("b", LoihiSynapse("dense", w1, (6,), (3,), weight_exp=7),
                    LoihiNeuron((3,), du=2000, dv=0, vth=20000), rec)
    return LoihiNetwork((5,), (l0, l1))


def test_count_overflows_equals_a_direct_count_from_simulate():
    ir = _overflowing_ir()
    x = (torch.rand(12, 4, 5, generator=torch.Generator().manual_seed(1)) < 0.6).float()
    got = count_overflows(ir, x)
    want = direct_counts(ir, x)
    for name in want:
        for key, value in want[name].items():
            assert getattr(got[name], key) == value, (name, key)
    assert got["a"].current_wraps > 0 and got["a"].voltage_saturations > 0  # the test bites
    assert got["b"].current_wraps > 0 and got["b"].voltage_saturations > 0
    assert got["a"].neurons == 6 and 0 <= got["a"].spike_rate <= 1
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, \*\(5,\)\), got \(12, 5\)"):
        count_overflows(ir, x[:, 0])


def test_count_overflows_of_a_conv_net_equals_a_direct_count():
    rng = np.random.default_rng(2)
    conv = LoihiSynapse("conv", rng.integers(100, 127, (4, 8, 3, 3)) * 2, (8, 6, 6), (4, 4, 4))
    dense = LoihiSynapse("dense", rng.integers(-256, 255, (5, 64)) // 2 * 2, (4, 4, 4), (5,),
                         weight_exp=7)
    ir = LoihiNetwork((8, 6, 6), (  # u keeps its current (du = 0) and wraps within T steps
        LoihiLayer("c", conv, LoihiNeuron((4, 4, 4), du=0, dv=200, vth=131071)),
        LoihiLayer("d", dense, LoihiNeuron((5,), du=4095, dv=4095, vth=50))))
    x = (torch.rand(12, 3, 8, 6, 6, generator=torch.Generator().manual_seed(3)) < 0.9).float()
    got = count_overflows(ir, x)
    want = direct_counts(ir, x)
    assert {k: {c: getattr(got[k], c) for c in want[k]} for k in want} == want
    assert got["c"].current_wraps > 0 and got["d"].current_wraps > 0
    assert 0 < got["c"].spike_rate < 1


def _direct_clipped(net) -> list[int]:
    """Per QuantLinear: mantissas that rounding put outside the grid and registers() clipped."""
    out = []
    for m in net.modules():
        if isinstance(m, QuantLinear):
            _, _, step = weight_grid(m.num_weight_bits, m.sign_mode)
            raw = torch.round(m.weight.detach().double() * 2.0 ** (m.scale_exp - 6 - m.weight_exp)
                              / step) * step
            out.append(int((raw != m.registers()["weight_mant"]).sum()))
    return out


def test_overflow_monitor_counts_equal_direct_counts_and_warn_and_stop():
    net = make_net()
    _, _, xv, _ = digits()
    sample = xv[:, :8]
    net[0].weight_exp = 7  # a stale calibration: one spike adds up to 254 << 7 << 6
    grid = 2.0 ** (net[0].scale_exp - 6 - 7)  # float weight -> mantissa
    with torch.no_grad():  # weights grow past the grid: the largest clip at 4x its end
        w = net[0].weight.abs_()
        w.mul_(4 * 254 / (float(w.max()) * grid))
        net[2].weight.mul_(3.0)
    mon = OverflowMonitor(sample, warn_above=0, stop_above=10)
    with pytest.warns(OverflowWarning, match=r"epoch 0: counts above warn_above=0: 1\."
                                             r"current_wraps=\d+.*Stopping \(stop_above=10\)"):
        assert mon.on_epoch_end(net, 0, {}) is True
    layers = mon.history[-1]["layers"]
    assert list(layers) == ["1", "3"]
    want = direct_counts(extract(net, sample[0]), sample)
    for name in want:
        for key, value in want[name].items():
            assert layers[name][key] == value, (name, key)
    assert layers["1"]["current_wraps"] > 0
    assert [layers["1"]["clipped_weights"], layers["3"]["clipped_weights"]] == _direct_clipped(net)
    assert layers["1"]["clipped_weights"] > 0
    assert clipped_per_layer(net, sample[0]) == {"1": layers["1"]["clipped_weights"],
                                                 "3": layers["3"]["clipped_weights"]}
    assert mon.log_dict()["overflow/1/current_wraps"] == layers["1"]["current_wraps"]


def test_overflow_monitor_every_and_quiet_when_below_limits():
    net = make_net()
    _, _, xv, _ = digits()
    mon = OverflowMonitor(xv[:, :4], every=2, warn_above=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stops = [mon.on_epoch_end(net, e, {}) for e in range(4)]
    assert stops == [False] * 4
    assert [h["epoch"] for h in mon.history] == [1, 3]
    assert mon.log_dict()  # epoch 3 measured
    mon.on_epoch_end(net, 4, {})
    assert mon.log_dict() == {}  # nothing measured at epoch 4


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(sample=[0, 1]), r"sample must be a \(T, B, \*input_shape\) tensor of spikes, got list"),
    (dict(sample=torch.zeros(3, 4)), r"sample must be .* got \(3, 4\)"),
    (dict(every=0), r"every must be a positive integer, got 0"),
    (dict(warn_above=-1), r"warn_above must be a non-negative integer .*got -1"),
    (dict(stop_above=2.5), r"stop_above must be a non-negative integer .*got 2.5"),
    (dict(watch=("current_wraps", "wraps")), r"watch must name counts among \['current_wraps', "
                                             r"'voltage_saturations', .*got \['current_wraps', 'wraps'\]"),
])
def test_overflow_monitor_rejects_bad_arguments(kwargs, match):
    kwargs.setdefault("sample", torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=match):
        OverflowMonitor(**kwargs)


# ---- ParityCheck --------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(backend="loihi"), r"backend must be one of \['lava', 'netx'\], got 'loihi'"),
    (dict(every=-2), r"every must be a positive integer, got -2"),
    (dict(inputs=torch.zeros(4)), r"inputs must be a \(T, B, \*input_shape\) tensor .*got \(4,\)"),
])
def test_parity_check_rejects_bad_arguments(kwargs, match):
    kwargs.setdefault("inputs", torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=match):
        ParityCheck(**kwargs)


class _FakeReport:  # the fields of verify's ParityReport that ParityCheck reads
    def __init__(self, exact, mismatches):
        self.exact = exact
        self.layers = [SimpleNamespace(name=k, spike_mismatches=v, first_divergence=v or None)
                       for k, v in mismatches.items()]


def test_parity_check_records_and_raises_on_mismatch(monkeypatch):
    verify_mod = importlib.import_module("snntorch_loihi.verify")  # the module, not sl.verify

    calls = []

    def fake_verify(net, inputs, backend="lava", float_drift=True):
        calls.append((inputs.shape, backend))
        return _FakeReport(len(calls) == 1, {"1": 0, "3": 0 if len(calls) == 1 else 7})

    monkeypatch.setattr(verify_mod, "verify", fake_verify)
    inputs, net = torch.zeros(4, 2, 64), make_net()
    pc = ParityCheck(inputs, every=2, raise_on_mismatch=True)
    assert pc.on_epoch_end(net, 0, {}) is False and calls == []
    pc.on_epoch_end(net, 1, {})
    assert pc.history == [{"epoch": 1, "exact": True, "mismatches": {"1": 0, "3": 0},
                           "first_divergence": {"1": None, "3": None}, "backend": "lava"}]
    assert pc.log_dict() == {"parity/exact": 1.0, "parity/1/mismatches": 0.0,
                             "parity/3/mismatches": 0.0}
    with pytest.raises(ParityMismatchError, match=r"epoch 3: the network must match lava "
                                                  r"exactly, got spike mismatches \{'3': 7\}"):
        pc.on_epoch_end(net, 3, {})
    assert calls == [((4, 2, 64), "lava")] * 2


@pytest.mark.lava
def test_parity_check_runs_lava_on_a_trained_net():
    x, y, xv, yv = digits()
    net = make_net()
    QuantizationSchedule(float_epochs=0).on_epoch_start(net, 0)
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    train_epoch(net, x, y, opt, loss_fn(), steps=steps_of(net))
    accuracy(net, xv, yv, steps=steps_of(net))  # as a loop does before its epoch-end hooks
    pc = ParityCheck(xv[:, :3])
    pc.on_epoch_end(net, 0, {})
    entry = pc.history[-1]
    assert entry["exact"] is True and set(entry["mismatches"]) == {"1", "3"}
    assert pc.log_dict()["parity/exact"] == 1.0


# ---- ExportBest ---------------------------------------------------------------------------------
def test_export_best_writes_nir_and_netx_only_on_improvement(tmp_path):
    net = make_netx_net()
    _, _, xv, _ = digits()
    eb = ExportBest(tmp_path / "best", monitor="val_loss", mode="min", sample=xv[0, :1])
    for epoch, score in enumerate([0.9, 0.7, 0.8, float("nan"), 0.7]):
        eb.on_epoch_end(net, epoch, {"val_loss": torch.tensor(score)})
    assert (eb.best_epoch, eb.best_score, eb.writes) == (1, pytest.approx(0.7), 2)
    meta = json.loads((tmp_path / "best" / "best.json").read_text())
    assert meta["epoch"] == 1 and meta["files"] == ["best.nir", "best.net"]
    graph = nir.read(tmp_path / "best" / "best.nir")
    assert graph.nodes["1.neuron"].metadata["loihi"]["vth"] == net[1].registers()["vth"]
    import h5py

    with h5py.File(tmp_path / "best" / "best.net") as f:
        assert np.array_equal(f["layer/1/weight"][()] >> 0, np.asarray(
            extract(net, xv[0, :1]).layers[0].synapse.weight_mant) << net[0].weight_exp)
    resumed = ExportBest(tmp_path / "best", monitor="val_loss", mode="min", sample=xv[0, :1])
    resumed.load_state_dict(eb.state_dict())
    assert not resumed.is_improvement(0.75) and resumed.is_improvement(0.6)


def test_export_best_keeps_nir_when_netx_cannot_hold_the_net(tmp_path):
    net = make_netx_net()
    net[0].weight_exp = -1  # netx files hold no negative weight exponent
    _, _, xv, _ = digits()
    eb = ExportBest(tmp_path, sample=xv[0, :1])
    with pytest.warns(NetxExportWarning, match=r"epoch 0: wrote .*best.nir but no netx file"):
        eb.on_epoch_end(net, 0, {"val_acc": 0.5})
    assert (tmp_path / "best.nir").exists() and not (tmp_path / "best.net").exists()
    assert "netx" in json.loads((tmp_path / "best.json").read_text())["netx_error"]


def test_export_best_errors(tmp_path):
    sample = torch.zeros(1, 64)
    with pytest.raises(ValueError, match=r"mode must be one of \['min', 'max'\], got 'maximum'"):
        ExportBest(tmp_path, mode="maximum", sample=sample)
    with pytest.raises(ValueError, match=r"monitor must be a metric name, got ''"):
        ExportBest(tmp_path, monitor="", sample=sample)
    with pytest.raises(ValueError, match=r"sample must be a tensor .*got ndarray"):
        ExportBest(tmp_path, sample=np.zeros((1, 64)))
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=r"path_dir must be a folder, got the file"):
        ExportBest(tmp_path / "f", sample=sample)
    eb = ExportBest(tmp_path, monitor="val_acc", sample=sample)
    with pytest.raises(ValueError, match=r"metrics must contain monitor='val_acc', got "
                                         r"\['loss', 'train_acc'\]"):
        eb.on_epoch_end(None, 0, {"loss": 1.0, "train_acc": 0.3})


# ---- a plain five-line loop with every callback -------------------------------------------------
def test_plain_loop_with_all_callbacks_and_resumption(tmp_path, monkeypatch):
    verify_mod = importlib.import_module("snntorch_loihi.verify")  # the module, not sl.verify

    monkeypatch.setattr(verify_mod, "verify",
                        lambda net, inputs, backend, float_drift: _FakeReport(True, {"1": 0, "3": 0}))
    x, y, xv, yv = digits()
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    gen = torch.Generator().manual_seed(0)

    def make_callbacks():
        return CallbackList([
            QuantizationSchedule(float_epochs=1, freeze_epoch=2),
            OverflowMonitor(xv[:, :8], warn_above=None),
            ParityCheck(xv[:, :2], every=2),
            ExportBest(tmp_path, sample=xv[0, :1]),
        ])

    callbacks = make_callbacks()
    modes = []
    callbacks.on_train_start(net)
    for epoch in range(3):
        callbacks.on_epoch_start(net, epoch)
        modes.append(_modes(net))
        loss = train_epoch(net, x, y, opt, loss_fn(), steps=steps_of(net), generator=gen)
        acc = accuracy(net, xv, yv, steps=steps_of(net))
        if callbacks.on_epoch_end(net, epoch, {"loss": loss, "val_acc": acc}):
            break
    schedule, monitor, parity, best = callbacks
    assert modes == [(False, False), (True, True), (True, True)]
    assert schedule.frozen_at == 2 and net[1].calibration_frozen
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]
    sample = xv[:, :8]
    want = direct_counts(extract(net, sample[0]), sample)  # the net the last check saw
    assert {k: {c: v[c] for c in want[k]} for k, v in monitor.history[-1]["layers"].items()} == want
    assert [h["epoch"] for h in parity.history] == [1]
    assert best.best_epoch is not None and (tmp_path / "best.nir").exists()
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["epoch"] == best.best_epoch
    assert all((tmp_path / f).exists() for f in meta["files"])
    assert ("best.net" in meta["files"]) == (meta["netx_error"] is None)

    # resume: callback state and net state through torch.save, then one more epoch
    path = tmp_path / "ckpt.pt"
    torch.save({"net": net.state_dict(), "callbacks": callbacks.state_dict()}, path)
    ckpt = torch.load(path)
    net2 = make_net(seed=1)
    net2.load_state_dict(ckpt["net"])
    again = make_callbacks()
    again.load_state_dict(ckpt["callbacks"])
    assert again.state_dict() == callbacks.state_dict()
    again.on_epoch_start(net2, 3)
    assert _modes(net2) == (True, True) and net2[1].calibration_frozen
    assert again.callbacks[0].frozen_at == 2 and len(again.callbacks[1].history) == 3
