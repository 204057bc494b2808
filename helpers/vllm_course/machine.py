"""What this machine can run: the one probe of GPU, CPU instruction set, dtype and quantized kernels.

vLLM's CPU build loads one kernel library per instruction set (`vllm/platforms/cpu.py`); AVX2's has no W4A16 kernel
(GPTQ/AWQ load, then fail at the first forward pass), so `quant_support()` asks the loaded library for its ops."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any

from . import config

# vLLM 0.32's CPU ops behind each quantized format.
W4A16_OP = "cpu_gemm_wna16"
W8A8_OP = "onednn_scaled_mm"
# vLLM 0.32's CUDA minimum compute capabilities, major * 10 + minor (tests/test_bad_inputs.py checks them): GPTQ/AWQ
# configs, Marlin (4-bit), CUTLASS int8 (W8A8), bfloat16 (Ampere). Below Marlin GPTQ runs on Exllama: float16 only.
METHOD_MIN_CAPABILITY = {"gptq": 60, "awq": 75}
MARLIN_MIN_CAPABILITY = 75
W8A8_MIN_CAPABILITY = 75
BF16_MIN_CAPABILITY = 80
# `quantization=` names (vLLM 0.32) that read the same checkpoint format.
QUANT_FAMILIES = {"gptq": ("gptq", "auto_gptq", "gptq_marlin"), "awq": ("awq", "auto_awq", "awq_marlin"),
                  "compressed-tensors": ("compressed-tensors",)}


@dataclass(frozen=True)
class QuantSupport:
    """Which quantized formats vLLM can run here, and why (`why_*`: one line each)."""

    device: str  # "cpu" or "cuda"
    isa: str  # the CPU instruction set vLLM chose its library by ("AVX512_BF16", "AVX512", "AVX2"), or "sm_90"
    library: str  # vLLM's kernel library (CPU) or the GPU's name
    w4a16: bool  # GPTQ/AWQ 4-bit weights, 16-bit activations
    w8a8: bool  # int8 weights and activations (compressed-tensors W8A8)
    dtype: str  # what machine_kwargs() passes ("auto": the model's own)
    why_w4a16: str
    why_w8a8: str
    capability: int | None = None  # GPU compute capability, major * 10 + minor

    @property
    def quantized_model(self) -> str:
        """The course's quantized model for this machine: GPTQ 4-bit where it runs, else W8A8."""
        return config.GPTQ_MODEL if self.w4a16 else config.W8A8_MODEL

    def __str__(self) -> str:
        yes = {True: "yes", False: "no "}
        return "\n".join([f"device {self.device}, {self.isa} (vLLM library {self.library}), dtype {self.dtype}",
                          f"GPTQ/AWQ 4-bit (W4A16)  {yes[self.w4a16]}  {self.why_w4a16}",
                          f"int8 W8A8               {yes[self.w8a8]}  {self.why_w8a8}",
                          f"quantized course model  {self.quantized_model}"])


def has_gpu() -> bool:
    """Return True when PyTorch sees a CUDA GPU (the course's one GPU probe)."""
    import torch
    return bool(torch.cuda.is_available())


def cpu_isa() -> str:
    """The instruction set vLLM's CPU build picks its library by, asked the way vLLM asks it."""
    import torch
    if not torch.cpu._is_avx512_supported():
        return "AVX2"
    return "AVX512_BF16" if torch.cpu._is_avx512_bf16_supported() else "AVX512"


def has_amx() -> bool:
    """True on a CPU machine with AMX tiles (Intel Xeon since Sapphire Rapids), asked as vLLM 0.32 asks."""
    import torch
    return not has_gpu() and bool(torch.cpu._is_amx_tile_supported())


def core_share(index: int, workers: int) -> list[int]:
    """Worker `index` of `workers`'s cores: every `workers`-th one this process may use (all if fewer; [] where the
    OS cannot pin). vLLM binds its threads to its process's cores: engines sharing cores each run several times slower."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    cores = sorted(os.sched_getaffinity(0))
    return cores[index % workers::workers] or cores


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it, found before the first kill (kernels and engines run in
    sessions of their own, so a process group would miss them); processes already gone are skipped."""
    import psutil
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                process.kill()


def best_dtype() -> str | None:
    """The dtype `machine_kwargs()` passes to `LLM(...)`; None keeps the model's own (bfloat16). Measured:

    - AVX2 (bf16 emulated; 8 prompts x 32 tokens, `benchmarks/bench_quantized.py`): bf16 34 tok/s, fp16 38, fp32 78.
    - AMX: in bf16 vLLM 0.32 runs attention on its AMX kernel (`cpu_attn._get_attn_isa`) and the course model answers
      "What is the capital of France?" with "L'Etoile, la Marseillaise, la femme..." (Paris in float16 or float32, and
      in transformers' bf16). So float16 ("vec" kernel), not float32: as fast within noise on 2 Xeon cores (batch
      94-109 vs 97-102 tok/s, bf16 140), and GPTQ/AWQ refuse float32.
    - Elsewhere (GPU, AVX-512 without AMX: 450-470 tok/s in bf16) the model's dtype: without AVX512_BF16 (emulated,
      `bench_quantized.py --emulate AVX512`) float32 made 2.4x bf16's batch tok/s but 0.8x for one prompt: bf16 kept."""
    if has_gpu():
        return None
    return "float32" if cpu_isa() == "AVX2" else "float16" if has_amx() else None


def w8a8_dtype() -> str | None:
    """The dtype for the int8 W8A8 model: `best_dtype()`, except bfloat16 on AMX, where vLLM 0.32 runs it on
    its AMX int8 GEMM, which takes bfloat16 (float32 is refused; float16 aborted the process here)."""
    return "bfloat16" if has_amx() else best_dtype()


@functools.cache
def quant_support() -> QuantSupport:
    """Probe once which quantized formats vLLM runs here: the ops of its CPU kernel library, or the GPU's capability."""
    import torch
    if has_gpu():
        major, minor = torch.cuda.get_device_capability(0)
        cap = 10 * major + minor

        def answer(need: int) -> tuple[bool, str]:
            ok = cap >= need
            return ok, f"compute capability {cap / 10:.1f} {'>=' if ok else '<'} {need / 10:.1f} (vLLM 0.32's kernel table)"

        (w4, why4), (w8, why8) = answer(MARLIN_MIN_CAPABILITY), answer(W8A8_MIN_CAPABILITY)
        return QuantSupport("cuda", f"sm_{cap}", torch.cuda.get_device_name(0), w4, w8, "auto", why4, why8, cap)
    isa = cpu_isa()
    library = {"AVX512_BF16": "vllm._C", "AVX512": "vllm._C_AVX512", "AVX2": "vllm._C_AVX2"}[isa]
    from vllm.platforms import current_platform
    current_platform.import_kernels()
    w4a16, w8a8 = hasattr(torch.ops._C, W4A16_OP), hasattr(torch.ops._C, W8A8_OP)
    why4 = (f"{library} has {W4A16_OP}" if w4a16 else
            f"{library} has no {W4A16_OP} op: GPTQ/AWQ load but fail at the first forward pass; "
            "use the W8A8 model, or a CPU with AVX-512, or a GPU")
    why8 = f"{library} has {W8A8_OP}" if w8a8 else f"{library} has no {W8A8_OP} op"
    return QuantSupport("cpu", isa, library, w4a16, w8a8, best_dtype() or "auto", why4, why8)


def quant_family(method: str | None) -> str | None:
    """The checkpoint format a `quantization=` name reads ("gptq_marlin" -> "gptq"), or None."""
    return next((family for family, names in QUANT_FAMILIES.items() if method in names), None)


def gpu_quantization_problem(method: str | None, dtype: Any, capability: int | None,
                             device: str = "this GPU") -> str | None:
    """Say why a `quantization=` / `dtype=` pair cannot run on a GPU of compute capability `capability`
    (major * 10 + minor; None, a CPU: no rule applies), or return None when it can."""
    if capability is None:
        return None
    family = quant_family(method)
    name = str(dtype).replace("torch.", "") if dtype is not None else "auto"
    name = {"half": "float16", "float": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(name, name)
    cc = f"{capability // 10}.{capability % 10}"
    if family and name not in ("auto", "float16", "bfloat16"):
        return (f"quantization={method!r} runs 4-bit kernels that take float16 or bfloat16 activations, not "
                f"{name}: pass dtype='float16' (or 'auto').")
    if family in METHOD_MIN_CAPABILITY and capability < (need := METHOD_MIN_CAPABILITY[family]):
        return (f"quantization={method!r} needs compute capability {need // 10}.{need % 10} or higher in vLLM 0.32 "
                f"but {device} is {cc}: load the unquantized model ({config.BASE_MODEL}) or use a newer GPU.")
    if family == "gptq" and capability < MARLIN_MIN_CAPABILITY and name != "float16":
        return (f"quantization={method!r} on {device} (compute capability {cc}) can only use vLLM's Exllama kernel, "
                "which takes float16 activations only (Marlin needs 7.5+, bfloat16 needs 8.0+): pass dtype='float16'.")
    if name == "bfloat16" and capability < BF16_MIN_CAPABILITY:
        return (f"dtype='bfloat16' needs compute capability 8.0 or higher (Ampere) but {device} is {cc}: "
                "pass dtype='float16'.")
    return None
