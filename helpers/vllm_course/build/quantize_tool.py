"""Quantize a model folder to 4-bit GPTQ or AWQ with gptqmodel; runs INSIDE the tool venv.
Seeded, fixed calibration texts. The tool venv has no `vllm_course`: import nothing from it."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

BITS = 4
GROUP_SIZE = 64  # SmolLM2-135M's hidden size (576) is a multiple of 64, not of 128.
# GPTQ symmetric, as vLLM's GPTQ kernels expect; AWQ with a zero point (symmetric answered nonsense in vLLM 0.32).
SYM = {"gptq": True, "awq": False}
DESC_ACT = False
N_SAMPLES = 32  # sized for a 135M model: 128 took 14 min per method on an AVX2 CPU (bf16 emulated)
SEED = 0
CALIBRATION_SOURCE = "pydoc_data.topics (Python language reference shipped with the standard library)"


def calibration_texts(n: int = N_SAMPLES, seed: int = SEED) -> list[str]:
    """`n` English prose paragraphs of the Python reference in the standard library, a seeded sample."""
    from pydoc_data.topics import topics
    candidates: list[str] = []
    for key in sorted(topics):
        for block in topics[key].split("\n\n"):
            lines = block.strip().splitlines()
            # Prose only: no code examples, no grammar rules, no tables.
            if not lines or any(l.lstrip().startswith((">>>", "...", "|", "+-", "=")) for l in lines):
                continue
            text = re.sub(r"\s+", " ", " ".join(lines)).strip()
            letters = sum(c.isalpha() or c == " " for c in text)
            if 300 <= len(text) <= 2000 and letters / len(text) > 0.85:
                candidates.append(text)
    candidates = sorted(set(candidates))
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} calibration paragraphs found, need {n}")
    return random.Random(seed).sample(candidates, n)


def quant_config(method: str) -> Any:
    """gptqmodel's `GPTQConfig` or `AWQConfig` (GEMM format, what vLLM reads), 4-bit, group size 64."""
    from gptqmodel import AWQConfig, GPTQConfig
    # offload_to_disk=False: the default writes a random temp-folder path into config.json (builds differ).
    common = dict(bits=BITS, group_size=GROUP_SIZE, desc_act=DESC_ACT, sym=SYM[method], offload_to_disk=False)
    return GPTQConfig(**common) if method == "gptq" else AWQConfig(format="gemm", **common)


def main(argv: list[str] | None = None) -> int:
    """Quantize `--src` into `--dst` and write the settings used to `--report`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["gptq", "awq"], required=True)
    for option in ("--src", "--dst", "--report"):
        parser.add_argument(option, type=Path, required=True)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import numpy
    import torch
    random.seed(SEED)
    numpy.random.seed(SEED)
    torch.manual_seed(SEED)
    texts = calibration_texts()

    import gptqmodel
    from gptqmodel import GPTQModel
    model = GPTQModel.load(str(args.src), quant_config(args.method), device="cpu", dtype=torch.bfloat16)
    model.quantize(texts, batch_size=1)
    model.save(str(args.dst))

    report = {"tool": "gptqmodel", "tool_version": gptqmodel.__version__, "torch_version": torch.__version__,
              "method": args.method, "format": "gemm" if args.method == "awq" else "gptq", "bits": BITS,
              "group_size": GROUP_SIZE, "sym": SYM[args.method], "desc_act": DESC_ACT,
              "calibration_source": CALIBRATION_SOURCE, "calibration_count": len(texts), "seed": SEED,
              "cpu_workers": os.environ.get("GPTQMODEL_CPU_WORKERS"), "seconds": round(time.perf_counter() - start, 1)}
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
