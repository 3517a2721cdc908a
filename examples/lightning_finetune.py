"""Quantization-aware fine-tuning with Lightning, using snntorch-loihi's Lightning callbacks.

What it shows:

- a float snnTorch MLP pre-trained on digits (a plain loop, a few epochs), then ``prepare_qat``;
- a ``LightningModule`` that holds the quantization-aware network at ``self.net`` and runs it
  step by step for ``T + delay_steps(net)`` steps;
- ``lightning.Trainer`` (CPU) with the adapters of ``snntorch_loihi.callbacks.lightning``:

  - ``QuantizationSchedule``: quantized from epoch 0, calibration re-chosen at the start of each
    epoch until ``freeze_epoch``, then frozen (logs ``qat/synapses``, ``qat/neurons``,
    ``qat/frozen``);
  - ``OverflowMonitor``: counts 24-bit current wraps, voltage saturations, clipped weights and
    dead / always-on neurons on a monitoring batch (logs ``overflow/<layer>/<count>``);
  - ``ParityCheck``: runs the network on Lava's bit-accurate simulation and compares it with the
    torch forward (logs ``parity/exact``, ``parity/<layer>/mismatches``);
  - ``ExportBest``: writes ``best.nir`` + lava-dl netx ``best.net`` whenever ``val_acc``
    improves (logs ``export_best/score``);

- what each callback logged (Lightning's ``callback_metrics`` and the CSV log), and a plot of
  validation accuracy per epoch.

Run it::

    python examples/lightning_finetune.py [--quick] [--out out/lightning_finetune]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["build_float_net", "main"]


def build_float_net(hidden: int = 64, beta: float = 0.9) -> nn.Sequential:
    """Linear(64, hidden) + Leaky + Linear(hidden, 10) + Leaky, zero reset (Loihi's)."""
    import snntorch as snn

    return nn.Sequential(
        nn.Linear(64, hidden),
        snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(hidden, 10),
        snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero"),
    )


def _lit_module(net: nn.Module, steps: int, lr: float):
    """A LightningModule around ``net`` (built here so that importing this file is cheap)."""
    import lightning.pytorch as L
    import snntorch.functional as SF

    from snntorch_loihi.training import run_network

    class LitSNN(L.LightningModule):
        """Holds the quantization-aware network at ``self.net``; batches are (B, T, 64)."""

        def __init__(self) -> None:
            super().__init__()
            self.net, self.steps, self.lr = net, steps, lr
            self.loss_fn = SF.ce_rate_loss()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return run_network(self.net, x.transpose(0, 1), self.steps)  # time first

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss_fn(self(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=len(y))
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            acc = (self(x).sum(0).argmax(-1) == y).float().mean()
            self.log("val_acc", acc, on_epoch=True, batch_size=len(y), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.net.parameters(), lr=self.lr)

    return LitSNN()


def main(quick: bool = False, out: str | Path = "out/lightning_finetune") -> dict:
    """Pre-train in float, prepare_qat, fine-tune with Lightning + callbacks; print the logs.

    Args:
        quick: fewer epochs and samples (for the tests).
        out: folder for the CSV log, ``best/`` (NIR, netx, json) and ``val_acc.png``.

    Returns:
        ``{"accuracy": {...}, "logged": {callback: {metric: value}}, "history": {...},
        "best": {...}, "files": [paths], "seconds": float}``.
    """
    import lightning.pytorch as L
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import snntorch.functional as SF
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset
    from tqdm.auto import tqdm

    import snntorch_loihi as sl
    from snntorch_loihi.callbacks import lightning as slc
    from snntorch_loihi.data import digits_spikes
    from snntorch_loihi.training import accuracy, train_epoch

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_steps = 15 if quick else 25
    float_epochs, qat_epochs = (4, 2) if quick else (15, 5)
    n_train, n_val = (384, 128) if quick else (None, None)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x_tr, y_tr, x_va, y_va = digits_spikes(num_steps, seed=0)
    if quick:
        x_tr, y_tr, x_va, y_va = x_tr[:, :n_train], y_tr[:n_train], x_va[:, :n_val], y_va[:n_val]

    # 1. float pre-training (a plain loop; Lightning would do as well)
    net = build_float_net()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    batches = -(-x_tr.shape[1] // 64)
    with tqdm(total=float_epochs * batches, desc="float pre-training") as bar:
        for _ in range(float_epochs):
            train_epoch(net, x_tr, y_tr, opt, SF.ce_rate_loss(), generator=gen, progress=bar)
    acc_float = accuracy(net, x_va, y_va)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # post-training quantization notes, per layer
        qnet = sl.prepare_qat(net)
    steps = num_steps + sl.delay_steps(qnet)
    acc_ptq = accuracy(qnet, x_va, y_va, steps=steps)

    # 2. Lightning fine-tuning with the callbacks
    train = DataLoader(TensorDataset(x_tr.transpose(0, 1), y_tr), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(x_va.transpose(0, 1), y_va), batch_size=256)
    freeze_epoch = qat_epochs - 1
    callbacks = {
        "QuantizationSchedule": slc.QuantizationSchedule(float_epochs=0, freeze_epoch=freeze_epoch,
                                                         net_attr="net"),
        "OverflowMonitor": slc.OverflowMonitor(x_va[:, :16], warn_above=None, net_attr="net"),
        "ParityCheck": slc.ParityCheck(x_va[:, :2], every=qat_epochs, net_attr="net"),
        "ExportBest": slc.ExportBest(out / "best", monitor="val_acc", sample=x_va[0, :1],
                                     net_attr="net"),
    }
    logger = CSVLogger(out, name="logs", version=0)
    trainer = L.Trainer(max_epochs=qat_epochs, accelerator="cpu", devices=1, logger=logger,
                        callbacks=list(callbacks.values()), enable_checkpointing=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=out, log_every_n_steps=1)
    lit = _lit_module(qnet, steps, lr=5e-4)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(lit, train, val)
    acc_qat = accuracy(qnet, x_va, y_va, steps=steps)

    # 3. what each callback logged
    prefixes = {"QuantizationSchedule": "qat/", "OverflowMonitor": "overflow/",
                "ParityCheck": "parity/", "ExportBest": "export_best/"}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    logged = {name: {k: v for k, v in metrics.items() if k.startswith(p)}
              for name, p in prefixes.items()}
    plain = {name: cb.callback for name, cb in callbacks.items()}
    history = {
        "QuantizationSchedule": plain["QuantizationSchedule"].history,
        "OverflowMonitor": [{"epoch": h["epoch"], "layers": {
            layer: {k: v for k, v in c.items() if v}  # nonzero counts only
            for layer, c in h["layers"].items()}} for h in plain["OverflowMonitor"].history],
        "ParityCheck": plain["ParityCheck"].history,
    }
    best_json = out / "best" / "best.json"
    best = json.loads(best_json.read_text()) if best_json.exists() else {}
    rows = list(csv.DictReader((Path(logger.log_dir) / "metrics.csv").open()))
    val_curve = [(int(r["epoch"]), float(r["val_acc"])) for r in rows if r.get("val_acc")]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([e for e, _ in val_curve], [100 * a for _, a in val_curve], "o-",
            label="QAT fine-tuning (Lightning)")
    ax.axhline(100 * acc_float, color="gray", ls="--", label="float snnTorch")
    ax.axhline(100 * acc_ptq, color="tab:red", ls=":", label="right after prepare_qat")
    if best:
        ax.axvline(best["epoch"], color="tab:green", lw=0.8, label="ExportBest wrote")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "val_acc.png", dpi=120)
    plt.close(fig)

    result = {
        "accuracy": {"float snnTorch": acc_float, "post-training quantized": acc_ptq,
                     "QAT fine-tuned (Lightning)": acc_qat},
        "logged": logged,
        "history": history,
        "best": best,
        "files": [str(p) for p in sorted((out / "best").glob("*"))]
                 + [str(Path(logger.log_dir) / "metrics.csv"), str(out / "val_acc.png")],
        "seconds": time.perf_counter() - t_start,
    }
    print()
    print("| stage | validation accuracy |")
    print("|---|---|")
    for k, v in result["accuracy"].items():
        print(f"| {k} | {100 * v:.1f} % |")
    print("\nWhat each callback logged (last epoch, trainer.callback_metrics):")
    for name, values in logged.items():
        print(f"  {name}:")
        for k, v in sorted(values.items()):
            print(f"    {k} = {v:g}")
    print("\nHistories:")
    for h in history["QuantizationSchedule"]:
        print(f"  QuantizationSchedule epoch {h['epoch']}: synapses={h['synapses']} "
              f"neurons={h['neurons']} frozen={h['frozen']} calibrated={h['calibrated']}")
    for h in history["OverflowMonitor"]:
        print(f"  OverflowMonitor epoch {h['epoch']}: nonzero counts {h['layers']}")
    for h in history["ParityCheck"]:
        print(f"  ParityCheck epoch {h['epoch']} ({h['backend']}): exact={h['exact']} "
              f"mismatches={h['mismatches']}")
    print(f"  ExportBest: best val_acc {best.get('score', float('nan')):.3f} at epoch "
          f"{best.get('epoch')}, files {best.get('files')}")
    print(f"Files: {', '.join(result['files'])}  ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and samples")
    parser.add_argument("--out", default="out/lightning_finetune", help="output folder")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
