"""Turn what goes wrong around a model load or download into one line of advice.

`advise()` / `explain()` (`explainer.py`) map an exception raised by huggingface_hub, vLLM or the
OS to a course error (`vllm_course.errors`) whose message says what was wrong, where (model id,
path, endpoint) and what to do. A notebook shows it under the shortened traceback of the failed
cell: `setup()` registers the handler (`vllm_course.cell_errors`), which calls `advise()`::

    LLM(model="course/SmolLM2-135M-Instrukt", **machine_kwargs())
    ...
    OSError: course/SmolLM2-135M-Instrukt is not a local folder and is not a valid model identifier ...
    vllm_course: course/SmolLM2-135M-Instrukt does not exist on http://127.0.0.1:8765 (404 RepoNotFound): ...

The message texts live in `messages.py`; `gpu.py` holds vLLM's GPU kernel rules
(`gpu_quantization_problem()`, testable without a GPU); `files.py` the on-disk checks the
explainer uses.

tests/test_bad_inputs.py provokes each message for real and asserts its text;
tests/test_cell_errors.py checks what the handler shows in real kernels.
"""

from __future__ import annotations

from .explainer import advise, explain
from .gpu import MARLIN_MIN_CAPABILITY, METHOD_MIN_CAPABILITY, gpu_quantization_problem
from .messages import (
    bad_id_message,
    corrupted_message,
    disk_filled_message,
    gated_message,
    incomplete_folder_message,
    missing_folder_message,
    missing_kernel_message,
    not_cached_message,
    not_found_message,
    not_writable_message,
    partial_message,
    quantization_message,
    revision_message,
    unreachable_message,
    weight_format_message,
)

__all__ = [
    "MARLIN_MIN_CAPABILITY",
    "METHOD_MIN_CAPABILITY",
    "advise",
    "bad_id_message",
    "corrupted_message",
    "disk_filled_message",
    "explain",
    "gated_message",
    "gpu_quantization_problem",
    "incomplete_folder_message",
    "missing_folder_message",
    "missing_kernel_message",
    "not_cached_message",
    "not_found_message",
    "not_writable_message",
    "partial_message",
    "quantization_message",
    "revision_message",
    "unreachable_message",
    "weight_format_message",
]
