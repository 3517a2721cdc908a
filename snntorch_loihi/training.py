"""Small helpers to run and train step-wise snnTorch networks (time first, batch second)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from snntorch import utils as snn_utils
from torch import nn

__all__ = ["run_network", "spike_count_accuracy", "accuracy", "train_epoch"]


def run_network(net: nn.Module, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """Reset ``net``'s hidden states and run it one step per call; returns output spikes.

    Args:
        net: a network whose forward takes one time step ``x[t]`` (``init_hidden=True`` neurons;
            a tuple output contributes its first element, the spikes).
        x: ``(T, B, ...)`` input.
        steps: total steps to run; steps past ``T`` get zero input (to flush the one-step delay
            per synapse layer of a quantized network, pass ``T + delay_steps(net)``).

    Returns:
        ``(steps, B, ...)`` output spikes.
    """
    steps = x.shape[0] if steps is None else steps
    snn_utils.reset(net)
    zero = torch.zeros_like(x[0])
    out = []
    for t in range(steps):
        y = net(x[t] if t < x.shape[0] else zero)
        out.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(out)


def spike_count_accuracy(spk: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples whose most active output neuron (spike count over time) is the label.

    Example:
        >>> spk = torch.tensor([[[1., 0.], [0., 1.]], [[1., 0.], [1., 0.]]])  # (T=2, B=2, 2)
        >>> spike_count_accuracy(spk, torch.tensor([0, 1]))
        0.5
    """
    return float((spk.sum(0).argmax(-1) == y.to(spk.device)).float().mean())


@torch.no_grad()
def accuracy(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None,
    batch_size: int = 256,
) -> float:
    """Fraction of samples whose most active output neuron (spike count) is the label."""
    was_training = net.training
    net.eval()
    correct = 0
    for i in range(0, x.shape[1], batch_size):
        spk = run_network(net, x[:, i : i + batch_size], steps)
        correct += int((spk.sum(0).argmax(-1) == y[i : i + batch_size].to(spk.device)).sum())
    net.train(was_training)
    return correct / x.shape[1]


def train_epoch(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    progress: Iterable | None = None,
) -> float:
    """One epoch of BPTT over shuffled mini-batches; returns the mean loss."""
    net.train()
    order = torch.randperm(x.shape[1], generator=generator)
    total, count = 0.0, 0
    for i in range(0, x.shape[1], batch_size):
        idx = order[i : i + batch_size]
        spk = run_network(net, x[:, idx], steps)
        loss = loss_fn(spk, y[idx].to(spk.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss) * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(1)  # type: ignore[attr-defined]
    return total / count
