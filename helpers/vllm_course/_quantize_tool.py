"""Quantize a model folder to 4-bit GPTQ or AWQ with gptqmodel (runs INSIDE the tool venv).

This script is started by `vllm_course.quantize` with the tool venv's Python. It must not import
`vllm_course`: the tool venv has gptqmodel and its own torch/transformers, not the course package.

Usage:
    python _quantize_tool.py --method gptq --src SRC --dst DST --report REPORT.json

It writes the quantized model to DST and a JSON report of the settings it used to REPORT.json.
Everything is seeded and the calibration text is fixed, so two runs give the same settings.
"""

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
# GPTQ: symmetric (no zero point), what vLLM's GPTQ kernels expect. AWQ: with a zero point, the
# AutoAWQ default; symmetric AWQ (zero_point=false) loaded in vLLM 0.32 CPU but answered nonsense.
SYM = {"gptq": True, "awq": False}
DESC_ACT = False
N_SAMPLES = 32  # sized for a 135M model: 128 took 14 min per method on an AVX2 CPU (bf16 emulated)
SEED = 0
CALIBRATION_SOURCE = "pydoc_data.topics (Python language reference shipped with the standard library)"


def calibration_texts(n: int = N_SAMPLES, seed: int = SEED) -> list[str]:
    """Pick `n` English prose paragraphs from the Python reference in the standard library.

    Args:
        n: How many paragraphs to return.
        seed: Seed of the (stable) sample, so every run calibrates on the same texts.

    Returns:
        The paragraphs, each with its line wraps joined into one line.

    Raises:
        ValueError: If the standard library has fewer than `n` suitable paragraphs.
    """
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
    """Build gptqmodel's config for `method` ("gptq" or "awq"), 4-bit, group size 64.

    Args:
        method: "gptq" or "awq".

    Returns:
        A gptqmodel `GPTQConfig` or `AWQConfig` (AWQ is written in the GEMM format vLLM reads).
    """
    from gptqmodel import AWQConfig, GPTQConfig

    # offload_to_disk=False: a 135M model fits in memory, and the default would write a random
    # temp-folder path into config.json, making two builds differ.
    common = dict(bits=BITS, group_size=GROUP_SIZE, desc_act=DESC_ACT, sym=SYM[method], offload_to_disk=False)
    if method == "gptq":
        return GPTQConfig(**common)
    return AWQConfig(format="gemm", **common)


def seed_everything(seed: int = SEED) -> None:
    """Seed Python, NumPy and torch.

    Args:
        seed: The seed.
    """
    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: list[str] | None = None) -> int:
    """Quantize, save and write the report.

    Args:
        argv: Command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status (0 on success; failures raise and exit non-zero with a traceback).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["gptq", "awq"], required=True)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dst", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    seed_everything()
    texts = calibration_texts()

    import gptqmodel
    import torch
    from gptqmodel import GPTQModel

    model = GPTQModel.load(str(args.src), quant_config(args.method), device="cpu", dtype=torch.bfloat16)
    model.quantize(texts, batch_size=1)
    model.save(str(args.dst))

    report = {
        "tool": "gptqmodel",
        "tool_version": gptqmodel.__version__,
        "torch_version": torch.__version__,
        "method": args.method,
        "format": "gemm" if args.method == "awq" else "gptq",
        "bits": BITS,
        "group_size": GROUP_SIZE,
        "sym": SYM[args.method],
        "desc_act": DESC_ACT,
        "calibration_source": CALIBRATION_SOURCE,
        "calibration_count": len(texts),
        "seed": SEED,
        "cpu_workers": os.environ.get("GPTQMODEL_CPU_WORKERS"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
