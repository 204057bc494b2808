"""What this machine can run: the one probe of CPU instruction set, GPU, dtype and quantized kernels.

vLLM's CPU build ships one kernel library per instruction set and loads one of them
(`vllm/platforms/cpu.py`, `import_kernels`): `vllm._C` (AVX-512 with BF16), `vllm._C_AVX512` or
`vllm._C_AVX2`. The AVX2 library has no `cpu_gemm_wna16`, the W4A16 kernel that GPTQ and AWQ run
on, so a 4-bit model loads there and then fails at its first forward pass. This module asks the
loaded library which ops it registered, instead of finding out by a crash, and picks the course's
quantized model and the fastest dtype in one place.

Example:
    >>> from vllm_course.machine import quant_support
    >>> print(quant_support())                                         # doctest: +SKIP
    device cpu, AVX2 (vLLM library vllm._C_AVX2), dtype float32
    GPTQ/AWQ 4-bit (W4A16)  no   vllm._C_AVX2 has no cpu_gemm_wna16 op: ...
    int8 W8A8               yes  vllm._C_AVX2 has onednn_scaled_mm
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from . import config

# vLLM 0.32's CPU ops behind each quantized format.
W4A16_OP = "cpu_gemm_wna16"
W8A8_OP = "onednn_scaled_mm"
# Compute capability vLLM 0.32 needs on a GPU: Marlin (GPTQ/AWQ 4-bit) and CUTLASS int8 (W8A8).
GPU_MIN_CAPABILITY = {"w4a16": 75, "w8a8": 75}


@dataclass(frozen=True)
class QuantSupport:
    """Which quantized formats vLLM can run here, and why.

    Attributes:
        device: "cpu" or "cuda".
        isa: CPU instruction set vLLM chose its library by ("AVX512_BF16", "AVX512", "AVX2"), or
            the GPU's compute capability ("sm_90").
        library: the vLLM kernel library (CPU) or the GPU's name.
        w4a16: GPTQ/AWQ 4-bit weights with 16-bit activations run here.
        w8a8: int8 weights and activations (compressed-tensors W8A8) run here.
        dtype: the dtype `machine_kwargs()` passes ("auto": the model's own).
        why_w4a16: one line on the W4A16 answer.
        why_w8a8: one line on the W8A8 answer.
    """

    device: str
    isa: str
    library: str
    w4a16: bool
    w8a8: bool
    dtype: str
    why_w4a16: str
    why_w8a8: str

    @property
    def quantized_model(self) -> str:
        """The course's quantized model for this machine: GPTQ 4-bit where it runs, else W8A8."""
        return config.GPTQ_MODEL if self.w4a16 else config.W8A8_MODEL

    def __str__(self) -> str:
        yes = {True: "yes", False: "no "}
        return "\n".join([
            f"device {self.device}, {self.isa} (vLLM library {self.library}), dtype {self.dtype}",
            f"GPTQ/AWQ 4-bit (W4A16)  {yes[self.w4a16]}  {self.why_w4a16}",
            f"int8 W8A8               {yes[self.w8a8]}  {self.why_w8a8}",
            f"quantized course model  {self.quantized_model}",
        ])


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


def best_dtype() -> str | None:
    """The dtype `machine_kwargs()` passes to `LLM(...)`; None leaves vLLM's default (the config's).

    AVX2 CPUs have no bf16 arithmetic and vLLM emulates it: measured on one (8 prompts x 32 tokens,
    fastest of 6 runs, `benchmarks/bench_quantized.py`) bfloat16 34 tok/s, float16 38, float32 78;
    one prompt alone was a little faster in 16 bits (16-17 tok/s against 14). So float32 there,
    for batches; 4-bit GPTQ/AWQ,
    which need 16-bit activations, cannot run on AVX2 anyway. Elsewhere (GPU, AVX-512 with BF16:
    450-470 tok/s in bf16) the model's own dtype, bfloat16. AVX-512 CPUs without BF16 keep it too:
    not measured by the course.
    """
    if has_gpu():
        return None
    return "float32" if cpu_isa() == "AVX2" else None


@functools.cache
def quant_support() -> QuantSupport:
    """Probe which quantized formats vLLM can run on this machine (cached per process).

    On CPU it loads vLLM's kernel library for this CPU (as vLLM does on start) and looks for the
    ops each format calls. On a GPU it reads the compute capability.

    Returns:
        A `QuantSupport`.
    """
    if has_gpu():
        return _gpu_support()
    import torch

    isa = cpu_isa()
    library = {"AVX512_BF16": "vllm._C", "AVX512": "vllm._C_AVX512", "AVX2": "vllm._C_AVX2"}[isa]
    from vllm.platforms import current_platform

    current_platform.import_kernels()
    ops = torch.ops._C
    w4a16, w8a8 = hasattr(ops, W4A16_OP), hasattr(ops, W8A8_OP)
    why4 = (f"{library} has {W4A16_OP}" if w4a16 else
            f"{library} has no {W4A16_OP} op: GPTQ/AWQ load but fail at the first forward pass; "
            "use the W8A8 model, or a CPU with AVX-512, or a GPU")
    why8 = f"{library} has {W8A8_OP}" if w8a8 else f"{library} has no {W8A8_OP} op"
    return QuantSupport("cpu", isa, library, w4a16, w8a8, best_dtype() or "auto", why4, why8)


def _gpu_support() -> QuantSupport:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    cap = 10 * major + minor
    name = torch.cuda.get_device_name(0)

    def answer(kind: str) -> tuple[bool, str]:
        need = GPU_MIN_CAPABILITY[kind]
        ok = cap >= need
        return ok, f"compute capability {cap / 10:.1f} {'>=' if ok else '<'} {need / 10:.1f} (vLLM 0.32's kernel table)"

    (w4, why4), (w8, why8) = answer("w4a16"), answer("w8a8")
    return QuantSupport("cuda", f"sm_{cap}", name, w4, w8, "auto", why4, why8)
