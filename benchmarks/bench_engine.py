"""Engine start in-process vs vLLM's default multi-process, and weight sizes per variant.

Run: .venv/bin/python benchmarks/bench_engine.py [--repeats 2]

Each measurement runs in a fresh Python process so that imports and caches do not favour one
mode; the figures are printed side by side. This machine is shared and noisy: read ratios, and
re-run before quoting a figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from vllm_course import config, formats
from vllm_course.build import require

_CHILD = r"""
import json, os, sys, time
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = sys.argv[2]
from vllm_course import engine
if __name__ == "__main__":
    from vllm import LLM
    engine._import_vllm()
    with engine.load_report(sys.argv[1]) as report:
        llm = LLM(model=sys.argv[1], **engine.machine_kwargs())
    print("RESULT " + json.dumps({"seconds": report.seconds, "checkpoint_gib": report.checkpoint_gib,
                                  "rss": report.rss_bytes}))
    engine.release(llm)
"""


def _start(model: str, multiprocess: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, model, "1" if multiprocess else "0"],
                         capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"engine start failed for {model}:\n{out.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    base = str(require(config.BASE_MODEL))
    print(f"Engine start for {config.BASE_MODEL} (median of {args.repeats}, fresh process each)")
    medians = {}
    for label, multi in (("in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0)", False),
                         ("multi-process (vLLM default)", True)):
        runs = [_start(base, multi) for _ in range(args.repeats)]
        medians[multi] = statistics.median(r["seconds"] for r in runs)
        each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        print(f"  {label:48s} {medians[multi]:6.1f} s   runs: {each}")
    print(f"  ratio multi-process / in-process: {medians[True] / medians[False]:.1f}x\n")

    print(f"{'variant':42s} {'weights on disk':>16s} {'vLLM checkpoint size':>22s}")
    for repo_id in (config.BASE_MODEL, config.GPTQ_MODEL, config.AWQ_MODEL):
        try:
            path = require(repo_id)
        except FileNotFoundError:
            print(f"{repo_id:42s} {'not built':>16s}")
            continue
        on_disk = formats.inspect_folder(path).weight_bytes
        result = _start(str(path), False)
        print(f"{repo_id:42s} {on_disk / 1e6:13.1f} MB {result['checkpoint_gib']:19.2f} GiB")


if __name__ == "__main__":
    main()
