"""The ``snntorch-loihi`` command line: ``demo``, ``inspect``, ``verify``, ``convert``.

A thin front end: every command calls the public API and only formats its answer.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "estimate_cores", "CORE_NEURONS", "CORE_SYNAPSE_BYTES"]

#: Assumed neurons per Loihi 2 neuro-core (the chip's 1M neurons over 128 cores, rounded down).
CORE_NEURONS = 8192
#: Assumed synaptic memory per neuro-core, in bytes (dense weights at num_weight_bits each).
CORE_SYNAPSE_BYTES = 128 * 1024


class CliError(Exception):
    """A user error: printed as ``snntorch-loihi: error: ...`` with exit status 2."""


def estimate_cores(neurons: int, synapses: int, weight_bits: int) -> int:
    """Rough Loihi 2 neuro-core count of one layer, under the module's stated assumptions.

    Example:
        >>> estimate_cores(128, 64 * 128, 8)
        1
    """
    by_neurons = math.ceil(neurons / CORE_NEURONS)
    by_memory = math.ceil(synapses * weight_bits / 8 / CORE_SYNAPSE_BYTES)
    return max(1, by_neurons, by_memory)


def _read_graph(path: str):
    import nir

    p = Path(path)
    if not p.exists():
        raise CliError(f"file '{path}' does not exist.")
    try:
        return nir.read(str(p))
    except Exception as exc:
        raise CliError(f"file '{path}' is not a readable NIR file ({type(exc).__name__}: {exc}).") from exc


def _to_ir(graph, path: str):
    from .errors import LoihiError
    from .export import from_nir_graph

    try:
        return from_nir_graph(graph)
    except LoihiError as exc:
        raise CliError(f"file '{path}': {exc}") from exc


def _weight_error(graph, layer) -> str:
    """Largest |float weight in the graph - its register value|, relative to max |w|."""
    node = graph.nodes.get(f"{layer.name}.synapse")
    w = getattr(node, "weight", None)
    syn, k = layer.synapse, layer.neuron.scale_exp
    if w is None or np.shape(w) != np.shape(syn.weight_mant):
        return "n/a"
    reg = np.asarray(syn.weight_mant, np.float64) * 2.0 ** (syn.weight_exp + 6 - k)
    w = np.asarray(w, np.float64)
    scale = np.abs(w).max() or 1.0
    return f"{np.abs(w - reg).max() / scale:.2%}"


def cmd_inspect(args: argparse.Namespace) -> None:
    graph = _read_graph(args.file)
    ir = _to_ir(graph, args.file)
    print(f"{args.file}: {len(ir.layers)} layers, input shape {tuple(ir.input_shape)}, "
          f"delay {ir.delay} steps")
    header = (f"{'layer':<12}{'synapse':<8}{'neurons':>8}{'synapses':>10}{'w_exp':>6}{'bits':>5}"
              f"{'du':>6}{'dv':>6}{'vth':>8}{'scale':>7}  float equivalents{'':<28}{'w err':>7}"
              f"{'cores':>6}")
    print(header)
    print("-" * len(header))
    total = 0
    for layer in ir.layers:
        syn, neu = layer.synapse, layer.neuron
        n = int(np.prod(neu.shape))
        s = int(np.count_nonzero(syn.weight_mant))
        if layer.recurrent is not None:
            s += int(np.count_nonzero(layer.recurrent.weight_mant))
        k = neu.scale_exp
        beta = 1 - neu.dv / 4096
        alpha = 1 - (neu.du + 1) / 4096
        thr = (neu.vth << 6) * 2.0**-k
        wmax = float(np.abs(syn.weight_mant).max()) * 2.0 ** (syn.weight_exp + 6 - k)
        cores = estimate_cores(n, s, syn.num_weight_bits)
        total += cores
        floats = f"beta={beta:.4f} alpha={alpha:.4f} thr={thr:.4g} |w|max={wmax:.4g}"
        print(f"{layer.name:<12}{syn.kind:<8}{n:>8}{s:>10}{syn.weight_exp:>6}{syn.num_weight_bits:>5}"
              f"{neu.du:>6}{neu.dv:>6}{neu.vth:>8}{k:>7}  {floats:<45}"
              f"{_weight_error(graph, layer):>7}{cores:>6}")
    print("w err: largest |float weight in the file - its register value| / max |w| (0 for graphs "
          "written by snntorch-loihi: their float weights are the registers' values)")
    print(f"estimated Loihi 2 neuro-cores: {total} (assumes at most {CORE_NEURONS} neurons and "
          f"{CORE_SYNAPSE_BYTES // 1024} KiB of dense synaptic memory per core, one layer per core "
          f"group; a rough lower bound, not a mapping)")


def _load_input(path: str, ir) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise CliError(f"input file '{path}' does not exist.")
    try:
        x = np.load(p)
    except Exception as exc:
        raise CliError(f"input file '{path}' is not a .npy array ({type(exc).__name__}).") from exc
    shape = tuple(ir.input_shape)
    if tuple(x.shape[-len(shape):]) != shape or x.ndim not in (len(shape) + 1, len(shape) + 2):
        raise CliError(
            f"input must have shape (T, {', '.join(map(str, shape))}) or (T, B, "
            f"{', '.join(map(str, shape))}) for this network, got {tuple(x.shape)}."
        )
    return x


def cmd_verify(args: argparse.Namespace) -> None:
    import torch

    from .verify import verify

    graph = _read_graph(args.file)
    ir = _to_ir(graph, args.file)
    x = _load_input(args.input, ir)
    if x.ndim == len(ir.input_shape) + 1:
        x = x[:, None]
    report = verify(ir, torch.as_tensor(x, dtype=torch.float32), backend=args.backend)
    print(report)
    if args.plot:
        report.plot(args.plot)
        print(f"figure written to {args.plot}")
    if not report.exact:
        sys.exit(1)


def cmd_convert(args: argparse.Namespace) -> None:
    from .lava.netx import save_netx

    ir = _to_ir(_read_graph(args.file), args.file)
    save_netx(ir, args.netx)
    print(f"wrote lava-dl netx file {args.netx}")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=Path(args.out), progress=not args.no_progress))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snntorch-loihi",
        description="Deploy snnTorch networks to Loihi 2 with exact parity.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="registers, float equivalents and core estimate of a NIR file")
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("verify", help="torch forward vs Lava on an input .npy; exit 1 unless exact")
    p.add_argument("file")
    p.add_argument("--input", required=True, help=".npy array (T, *input) or (T, B, *input)")
    p.add_argument("--backend", choices=("lava", "netx"), default="lava")
    p.add_argument("--plot", help="write the parity figure to this PNG file")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("convert", help="write a lava-dl netx HDF5 file")
    p.add_argument("file")
    p.add_argument("--netx", required=True, help="output .h5 path")
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("demo", help="train, fine-tune, export and verify on digits")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snntorch-loihi`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except CliError as exc:
        print(f"snntorch-loihi: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
