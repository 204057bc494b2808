#!/usr/bin/env bash
# Execute every notebook on a CUDA GPU with internet, in the online profile, and print a report.
#
# For a person with an NVIDIA GPU (nvidia-smi works) and access to https://huggingface.co:
#     scripts/gpu_check.sh                # from the repository root, or from anywhere
# It bootstraps what `make test DEVICE=gpu` would (.venv with official vLLM, the quick course
# models that exercises 1.6.1/1.6.2 load), then runs 00_start_here, lessons 01-08 and the three
# exercises' solution notebooks (solutions/, nbgrader's source with the answers filled in) with
# VLLM_COURSE_PROFILE=online: the course hub is a logging mirror of the real Hub, the models are
# Qwen2.5-0.5B-Instruct and its GPTQ/AWQ/W8A8 versions and facebook/opt-125m.
#
# Executed copies go to build/gpu-check/<time>/ (or $GPU_CHECK_OUT); the notebooks under
# notebooks/ and solutions/ are not modified. Settings: CELL_TIMEOUT (seconds per cell, 1800),
# VLLM_COURSE_UPSTREAM (the Hub to mirror, https://huggingface.co).
# Exit status: 0 when every notebook ran, 1 when one failed, 2 when this machine cannot run it.
#
# Unrun: written on machines with no GPU, so only its no-GPU exit and `bash -n` were checked.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: nvidia-smi is not installed, so there is no CUDA GPU to check here." \
       "Run this on a machine with an NVIDIA GPU and its driver; on a CPU machine run 'make test'." >&2
  exit 2
fi
if ! GPUS=$(nvidia-smi -L 2>&1) || [ -z "$GPUS" ]; then
  echo "gpu_check: nvidia-smi found no GPU ($GPUS). Check the driver (nvidia-smi should list a GPU)," \
       "or run 'make test' for the CPU checks." >&2
  exit 2
fi

OUT=${GPU_CHECK_OUT:-build/gpu-check/$(date +%Y%m%d-%H%M%S)}
CELL_TIMEOUT=${CELL_TIMEOUT:-1800}
export VLLM_COURSE_PROFILE=online
export VLLM_COURSE_UPSTREAM=${VLLM_COURSE_UPSTREAM:-https://huggingface.co}

make venv quick-models DEVICE=gpu

if ! .venv/bin/python - <<'PY'
import os, sys
import httpx
url = os.environ["VLLM_COURSE_UPSTREAM"].rstrip("/") + "/api/models/Qwen/Qwen2.5-0.5B-Instruct"
try:
    httpx.get(url, timeout=15, follow_redirects=True).raise_for_status()
except httpx.HTTPError as exc:
    sys.exit(f"gpu_check: the online profile needs the Hub, and {url} did not answer ({exc}). "
             "Check the internet connection (or VLLM_COURSE_UPSTREAM), then run this again.")
PY
then
  exit 2
fi

NOTEBOOKS=(notebooks/00_start_here.ipynb notebooks/lessons/*.ipynb solutions/*/*.ipynb)
echo "gpu_check: $GPUS"
echo "gpu_check: ${#NOTEBOOKS[@]} notebooks, online profile (mirror of $VLLM_COURSE_UPSTREAM), copies in $OUT"

.venv/bin/python - "$OUT" "$CELL_TIMEOUT" "${NOTEBOOKS[@]}" <<'PY'
"""Execute each notebook in its own folder with nbclient; write the executed copy; print a table."""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

out, timeout, paths = Path(sys.argv[1]), int(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
rows = []
for path in paths:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start, error = time.monotonic(), ""
    try:
        client.execute()
    except CellExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # a timeout or a dead kernel: report it and go on with the next notebook
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - start
    target = out / path
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    first = next((line.strip() for line in error.splitlines() if line.strip()), "")
    rows.append((str(path), "failed" if error else "ok", seconds, first[:100]))
    print(f"  {rows[-1][1]:6} {seconds:7.1f} s  {path}", flush=True)

width = max(len(r[0]) for r in rows)
print(f"\n{'notebook':{width}}  result  seconds  first error line")
for name, result, seconds, first in rows:
    print(f"{name:{width}}  {result:6}  {seconds:7.1f}  {first}")
failed = sum(r[1] == "failed" for r in rows)
print(f"\n{len(rows) - failed} ok, {failed} failed; executed copies in {out}")
sys.exit(1 if failed else 0)
PY
