"""Quantization families and what vLLM 0.32's GPU kernels need from a method and a dtype.

`gpu_quantization_problem()` says, for a compute capability, why a `quantization=` / `dtype=`
pair cannot run (pure: testable without a GPU); the explainer applies it to vLLM's own refusals.
`QUANT_FAMILIES` groups the `quantization=` names that read the same
checkpoint format.
"""

from __future__ import annotations

from typing import Any

from .. import config

# Families of `quantization=` values that read the same checkpoint format (vLLM 0.32 names).
QUANT_FAMILIES: dict[str, frozenset[str]] = {
    "gptq": frozenset({"gptq", "auto_gptq", "gptq_marlin"}),
    "awq": frozenset({"awq", "auto_awq", "awq_marlin"}),
    "compressed-tensors": frozenset({"compressed-tensors"}),
}

# What vLLM 0.32's CUDA kernels need (tests/test_bad_inputs.py checks these against the installed
# vLLM): AutoGPTQConfig / AutoAWQConfig.get_min_capability(), MarlinLinearKernel (GPTQ/AWQ 4-bit
# on 7.5+), ExllamaLinearKernel (GPTQ on 6.0+, float16 activations only), and bfloat16 itself
# (Ampere, 8.0+). Capabilities are written as vLLM does: major * 10 + minor.
METHOD_MIN_CAPABILITY = {"gptq": 60, "awq": 75}
MARLIN_MIN_CAPABILITY = 75
BF16_MIN_CAPABILITY = 80
QUANT_ACT_DTYPES = ("float16", "bfloat16")


def gpu_quantization_problem(method: str | None, dtype: Any, capability: int | None,
                             device: str = "this GPU") -> str | None:
    """Say why a quantization method and dtype cannot run on a GPU of this compute capability.

    Pure (no GPU needed): the rules are vLLM 0.32's kernel requirements (see the constants above).

    Args:
        method: `quantization=` (or the checkpoint's quant_method), e.g. "gptq"; None if unquantized.
        dtype: the `dtype=` asked for ("auto", "float16", "bfloat16", "float32" or a torch dtype).
        capability: compute capability as major * 10 + minor (8.6 -> 86); None: a CPU, no rule applies.
        device: the GPU's name, for the message.

    Returns:
        The message, or None when the combination can run.

    Example:
        >>> gpu_quantization_problem("gptq", "bfloat16", 70, "Tesla V100")
        "quantization='gptq' on Tesla V100 (compute capability 7.0) can only use vLLM's Exllama kernel, which takes float16 activations only (Marlin needs 7.5+, bfloat16 needs 8.0+): pass dtype='float16'."
    """
    if capability is None:
        return None
    family = _family(method)
    dtype_name = str(dtype).replace("torch.", "") if dtype is not None else "auto"
    dtype_name = {"half": "float16", "float": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(dtype_name, dtype_name)
    cc = f"{capability // 10}.{capability % 10}"
    if family and dtype_name not in ("auto", *QUANT_ACT_DTYPES):
        return (f"quantization={method!r} runs 4-bit kernels that take float16 or bfloat16 activations, not "
                f"{dtype_name}: pass dtype='float16' (or 'auto').")
    if family in METHOD_MIN_CAPABILITY and capability < METHOD_MIN_CAPABILITY[family]:
        need = METHOD_MIN_CAPABILITY[family]
        return (f"quantization={method!r} needs compute capability {need // 10}.{need % 10} or higher in vLLM 0.32 "
                f"but {device} is {cc}: load the unquantized model ({config.BASE_MODEL}) or use a newer GPU.")
    if family == "gptq" and capability < MARLIN_MIN_CAPABILITY and dtype_name != "float16":
        return (f"quantization={method!r} on {device} (compute capability {cc}) can only use vLLM's Exllama kernel, "
                "which takes float16 activations only (Marlin needs 7.5+, bfloat16 needs 8.0+): pass dtype='float16'.")
    if dtype_name == "bfloat16" and capability < BF16_MIN_CAPABILITY:
        return (f"dtype='bfloat16' needs compute capability 8.0 or higher (Ampere) but {device} is {cc}: "
                "pass dtype='float16'.")
    return None


# -- private helpers -------------------------------------------------------------------------------


def _family(method: str | None) -> str | None:
    for family, names in QUANT_FAMILIES.items():
        if method in names:
            return family
    return None
