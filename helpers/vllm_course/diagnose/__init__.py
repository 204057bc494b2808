"""Turn what goes wrong around a model load or download into one line of advice.

Two halves:

- **Pre-flight** (`preflight()`, `checks.py`): before vLLM or `snapshot_download` starts, check the
  things that otherwise fail slowly or cryptically: the model id, the hub being reachable (under
  5 s instead of ~100 s of retries), the repo and revision existing, gating, the `load_format`
  matching a file, `quantization=` matching the checkpoint, the cache being writable and the disk
  big enough, and, offline, the snapshot being cached and complete.
- **Explain** (`explain()`, `explainer.py`; `diagnosed()`, `wrappers.py`): map an exception raised
  by huggingface_hub, vLLM or the OS to a course error (`vllm_course.errors`) whose message says
  what was wrong, where (model id, path, endpoint) and what to do. The original exception is
  chained (`raise ... from exc`).

`load()` and `download()` (`wrappers.py`) do both around `engine.load()` / `snapshot_download()`;
a lesson that shows the real call wraps it instead::

    from vllm import LLM
    from vllm_course.diagnose import diagnosed, preflight

    preflight("course/SmolLM2-135M-Instruct", load_format="safetensors")
    with diagnosed("course/SmolLM2-135M-Instruct"):
        llm = LLM(model="course/SmolLM2-135M-Instruct", load_format="safetensors", **machine_kwargs())

`check_env_applied()` (`env.py`) warns when an HF_* variable was changed after huggingface_hub
read it, `gpu_quantization_problem()` (`gpu.py`) explains what a GPU kernel needs (testable
without a GPU), and `release_interrupted()` (`interrupt.py`) frees a load stopped by Ctrl-C. The
message texts live in `messages.py`; `files.py` holds the on-disk helpers both halves share.

`scripts/error_catalogue.py` provokes every message for real and prints them.
"""

from __future__ import annotations

from .checks import Preflight, preflight
from .env import EnvMismatch, check_env_applied
from .explainer import advise, explain
from .gpu import (
    BF16_MIN_CAPABILITY,
    MARLIN_MIN_CAPABILITY,
    METHOD_MIN_CAPABILITY,
    QUANT_ACT_DTYPES,
    QUANT_FAMILIES,
    check_gpu_quantization,
    gpu_quantization_problem,
)
from .interrupt import release_interrupted
from .messages import (
    bad_id_message,
    corrupted_message,
    disk_filled_message,
    gated_message,
    incomplete_folder_message,
    missing_folder_message,
    not_cached_message,
    not_found_message,
    not_writable_message,
    partial_message,
    quantization_message,
    revision_message,
    unreachable_message,
    weight_format_message,
)
from .wrappers import diagnosed, download, load

__all__ = [
    "BF16_MIN_CAPABILITY",
    "MARLIN_MIN_CAPABILITY",
    "METHOD_MIN_CAPABILITY",
    "QUANT_ACT_DTYPES",
    "QUANT_FAMILIES",
    "EnvMismatch",
    "Preflight",
    "advise",
    "bad_id_message",
    "check_env_applied",
    "check_gpu_quantization",
    "corrupted_message",
    "diagnosed",
    "disk_filled_message",
    "download",
    "explain",
    "gated_message",
    "gpu_quantization_problem",
    "incomplete_folder_message",
    "load",
    "missing_folder_message",
    "not_cached_message",
    "not_found_message",
    "not_writable_message",
    "partial_message",
    "preflight",
    "quantization_message",
    "release_interrupted",
    "revision_message",
    "unreachable_message",
    "weight_format_message",
]
