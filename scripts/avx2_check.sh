#!/usr/bin/env bash
# The AVX2 path of the course on this machine: lesson 06 run to its end, and the three exercises graded.
#
#     scripts/avx2_check.sh          # from the repository root, or from anywhere (after `make test` or `make lab`)
#
# On an AVX2-only CPU it runs as it is. On an AVX-512 CPU it runs with a labelled test aid,
# scripts/emulate_avx2/sitecustomize.py: torch's CPU ISA checks answer as on an AVX2 CPU, so vLLM loads
# its real AVX2 kernel library (vllm._C_AVX2: no 4-bit W4A16 kernel), and ONEDNN_MAX_CPU_ISA=AVX2 keeps
# oneDNN on AVX2. Nothing in the course is faked: the lesson and the exercise run as a learner's would.
#
# 1. notebooks/lessons/06_quantized_models.ipynb, executed with nbclient into build/avx2-check/<time>/
#    (the notebook itself is not modified): no cell may fail; the lesson must show the real
#    `cpu_gemm_wna16` AttributeError with its one-line explanation, and measure the W8A8 model.
# 2. the three exercises through nbgrader (tests/test_nbgrader_pipeline.py; 1.6.3 grades W8A8 vs bf16 there):
#    the model answer, the release, Part 1 only, a correct answer in another style and the cheats,
#    every auto-graded cell checked against its expected score.
# Takes ~10 minutes on 2 cores. Exit status: 0 when both pass, 1 otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make venv quick-models
export PATH="$PWD/.venv/bin:$PATH"
if grep -qw avx512f /proc/cpuinfo; then
  export PYTHONPATH="$PWD/scripts/emulate_avx2${PYTHONPATH:+:$PYTHONPATH}" ONEDNN_MAX_CPU_ISA=AVX2
  echo "avx2_check: AVX-512 CPU: vLLM's ISA check forced to AVX2 (scripts/emulate_avx2, a labelled test aid)"
else
  echo "avx2_check: AVX2 CPU: run as it is"
fi
OUT=${AVX2_CHECK_OUT:-build/avx2-check/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
status=0

.venv/bin/python - "$OUT" <<'PY' || status=1
"""Run lesson 06 in a copy of its folder; check what an AVX2 learner must see."""
import shutil, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

out = Path(sys.argv[1])
shutil.copytree("notebooks/lessons", out / "lessons")
path = out / "lessons" / "06_quantized_models.ipynb"
nb = nbformat.read(path, 4)
start = time.perf_counter()
NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=True,
               resources={"metadata": {"path": str(path.parent)}}).execute()
nbformat.write(nb, path)
outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
text = "\n".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
failed = [f"{o['ename']}: {o['evalue'][:200]}" for o in outputs if o["output_type"] == "error"]
checks = {"no cell failed": not failed,
          "vLLM's AVX2 library loaded": "vllm._C_AVX2" in text,
          "the real missing-kernel error, explained": "no attribute 'cpu_gemm_wna16'" in text
                                                      and "has no cpu_gemm_wna16 op" in text,
          "the W8A8 model measured": "W8A8: course/SmolLM2-135M-Instruct-W8A8" in text}
print(f"avx2_check: lesson 06 ran in {time.perf_counter() - start:.0f} s; executed copy: {path}")
for name, ok in checks.items():
    print(f"  {'ok  ' if ok else 'FAIL'} {name}")
for line in failed:
    print(f"       {line}")
sys.exit(0 if all(checks.values()) else 1)
PY

echo "avx2_check: grading the three exercises with nbgrader (its kernels inherit this environment)"
.venv/bin/python -c "from vllm_course.machine import quant_support as q; s = q(); print('avx2_check: a new process sees', s.isa, s.library, '->', s.quantized_model)" 2>/dev/null
.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_nbgrader_pipeline.py 2>&1 \
  | tee "$OUT/pipeline.log" | grep -E "autograde|scores|^  |passed|failed" \
  || true
grep -qE "^[0-9]+ passed" "$OUT/pipeline.log" && ! grep -qE "[0-9]+ (failed|errors?)" "$OUT/pipeline.log" || status=1

echo "avx2_check: $([ $status = 0 ] && echo passed || echo FAILED) (outputs in $OUT)"
exit $status
