"""A labelled test aid, not part of the course: an AVX2-only CPU, as vLLM sees it, on an AVX-512 machine.

Every Python process started with this folder on PYTHONPATH gets torch CPU ISA checks that answer as on
an AVX2-only CPU (no AVX-512, no AVX512-BF16, no AMX). vLLM 0.32 asks exactly these checks to choose its
kernel library (`vllm/platforms/cpu.py`), so it loads its real `vllm._C_AVX2`, which runs on AVX-512 CPUs
too; the course's probe (`machine.quant_support`) asks them as well. With ONEDNN_MAX_CPU_ISA=AVX2 in the
environment oneDNN keeps to AVX2 kernels too. Used by scripts/avx2_check.sh and tests/test_machine.py.
"""

from vllm_course.import_hook import after_import  # standard library only

ANSWERS = {"_is_avx512_supported": False, "_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}


def _answer_as_avx2(torch) -> None:
    for attr, value in ANSWERS.items():
        setattr(torch.cpu, attr, lambda value=value: value)


after_import("torch", _answer_as_avx2)  # whoever imports torch first
