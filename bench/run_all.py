"""Run every benchmark under bench/ and print one table (Markdown) of what each measured.

Each benchmark runs in its own fresh Python process (Lava slows down inside long-lived
processes, see BASELINES.md) and measures its ratios side by side within that one run; this
script only collects the rows. Usage: ``python bench/run_all.py [--quick] [--out FILE.md]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, full arguments, --quick arguments)
BENCHMARKS = [
    ("bench_fixed_point.py", [], ["--samples", "16", "--lava-samples", "4", "--steps", "50"]),
    ("bench_qat.py", [], ["--repeats", "10"]),
    ("bench_verify.py", [], ["--samples", "10", "--steps", "50", "--per-sample", "1"]),
    ("bench_accuracy.py", [], ["--quick"]),
]

_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules["bench"] = mod; spec.loader.exec_module(mod)
rows = mod.main(sys.argv[2:])
print("@@ROWS@@" + json.dumps(rows or []))
"""


def run_one(script: str, args: list[str]) -> tuple[list[dict], float, str]:
    """Run one benchmark's ``main(argv)`` in a fresh process; returns its rows and output."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(HERE / script), *args],
                          capture_output=True, text=True)
    took = time.perf_counter() - t0
    rows: list[dict] = []
    text = []
    for line in proc.stdout.splitlines():
        if line.startswith("@@ROWS@@"):
            rows = json.loads(line[len("@@ROWS@@"):])
        else:
            text.append(line)
    if proc.returncode != 0:
        rows = [dict(benchmark=script, measure="FAILED", value=f"exit {proc.returncode}",
                     ratio=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")]
    return rows, took, "\n".join(text)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shortened settings of every benchmark")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    ap.add_argument("--only", nargs="*", help="run only these scripts")
    args = ap.parse_args(argv)
    lines = ["| benchmark | measure | value | ratio |", "|---|---|---|---|"]
    for script, full, quick in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        print(f"== {script} ...", flush=True)
        rows, took, text = run_one(script, quick if args.quick else full)
        print(text, flush=True)
        print(f"   ({took:.0f} s)", flush=True)
        for r in rows:
            lines.append(f"| {r['benchmark']} | {r['measure']} | {r['value']} | {r['ratio']} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
