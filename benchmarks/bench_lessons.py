"""Seconds each lesson takes under nbval, round after round (the course's target: under 3 minutes each).

Run: .venv/bin/python benchmarks/bench_lessons.py [--rounds 2] [notebook ...]

Each notebook runs in its own `pytest --nbval` process with the sanitizers `make test` uses, so a
round is also the check that the committed outputs are reproduced (nbval twice in a row). Prints
one line per notebook and round, then a table with the slowest round of each notebook.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from nbval_sanitizers import sanitizers  # noqa: E402 - tests/ is not a package

TARGET_S = 180


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    notebooks = [p.resolve() for p in args.notebooks] or [
        ROOT / "notebooks/00_start_here.ipynb", *sorted((ROOT / "notebooks/lessons").glob("*.ipynb"))]
    cfg = ROOT / ".venv" / "nbval_sanitize.cfg"
    cfg.write_text(sanitizers(), encoding="utf-8")
    seconds: dict[str, list[float]] = {}
    failed = 0
    for round_ in range(1, args.rounds + 1):
        for nb in notebooks:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", str(nb),
                                   "--nbval-sanitize-with", str(cfg)], cwd=ROOT, capture_output=True, text=True)
            took = time.perf_counter() - start
            seconds.setdefault(nb.name, []).append(took)
            failed += done.returncode != 0
            summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
            print(f"round {round_}  {nb.name:45s} {took:6.1f} s  {summary}", flush=True)
    print(f"\n{'notebook':45s} {'slowest':>8s}  target {TARGET_S} s")
    for name, runs in seconds.items():
        print(f"{name:45s} {max(runs):7.1f}s  {'ok' if max(runs) < TARGET_S else 'OVER'}")
    print(f"{'all notebooks, per round':45s} " + "  ".join(f"{sum(r[i] for r in seconds.values()):.0f} s"
                                                          for i in range(args.rounds)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
