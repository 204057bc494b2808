"""Every setting the course reads from the environment, read in one place: other modules import these names (or
call the functions, which re-read a value a lesson may have changed); tests monkeypatch them here."""

from __future__ import annotations

import os
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not an integer: set it to a number or unset it.") from exc


def course_home() -> Path:
    """Where the course keeps what it builds (models, the quantizers' tool venv, hub state); CI and tests move it."""
    value = os.environ.get("VLLM_COURSE_HOME")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "vllm-course"


def repos_dir() -> Path:
    """Folder of built course model repos, laid out as `<org>/<name>/`: the course hub's root."""
    return course_home() / "repos"


def course_hf_home() -> Path:
    """HF_HOME both profiles use, so the learner's own ~/.cache/huggingface is never touched."""
    return course_home() / "hf"


def repo_path(repo_id: str) -> Path:
    """Folder of a built course repo (it may not exist yet)."""
    return repos_dir() / repo_id


def mirror_dir() -> Path:
    """Folder where the online profile's course hubs keep what they fetched from the upstream."""
    return course_home() / "mirror"


def profile() -> str:
    """The profile in force: $VLLM_COURSE_PROFILE (`setup()` sets it), else "offline"; lower case."""
    return os.environ.get("VLLM_COURSE_PROFILE", "offline").strip().lower() or "offline"


# The course hub: loopback only unless told otherwise.
HUB_HOST: str = os.environ.get("VLLM_COURSE_HUB_HOST", "127.0.0.1")
HUB_PORT: int = _env_int("VLLM_COURSE_HUB_PORT", 8765)
# The online profile's course hub, a logging mirror of UPSTREAM, on its own port (both can run at once).
MIRROR_PORT: int = _env_int("VLLM_COURSE_MIRROR_PORT", 8766)
UPSTREAM: str = os.environ.get("VLLM_COURSE_UPSTREAM", "https://huggingface.co").rstrip("/")


def hub_port() -> int:
    """The fixed port of the profile's course hub: HUB_PORT offline, MIRROR_PORT online."""
    return MIRROR_PORT if profile() == "online" else HUB_PORT


# Course model repos (the `course/` namespace is never confused with upstream repos).
ORG = "course"
BASE_MODEL = f"{ORG}/SmolLM2-135M-Instruct"
BIN_MODEL = f"{ORG}/SmolLM2-135M-Instruct-bin"
PT_MODEL = f"{ORG}/SmolLM2-135M-Instruct-pt"
GPTQ_MODEL = f"{ORG}/SmolLM2-135M-Instruct-GPTQ-Int4"
AWQ_MODEL = f"{ORG}/SmolLM2-135M-Instruct-AWQ-Int4"
W8A8_MODEL = f"{ORG}/SmolLM2-135M-Instruct-W8A8"  # int8: runs where 4-bit kernels do not (AVX2 CPUs)
SHARDED_MODEL = f"{ORG}/SmolLM2-135M-Instruct-sharded"  # bf16 in 3 safetensors shards + index (lesson 09)
# Every course repo in build order: the quick ones take seconds (`models build --quick`), the 4-bit ones minutes.
QUICK_MODELS = (BASE_MODEL, BIN_MODEL, PT_MODEL, W8A8_MODEL, SHARDED_MODEL)
COURSE_MODELS = (*QUICK_MODELS, GPTQ_MODEL, AWQ_MODEL)

# The online profile's upstream equivalents (real Hub, GPU box).
ONLINE_MODELS = {
    BASE_MODEL: "Qwen/Qwen2.5-0.5B-Instruct",
    GPTQ_MODEL: "Qwen/Qwen2.5-0.5B-Instruct-GPTQ-Int4",
    AWQ_MODEL: "Qwen/Qwen2.5-0.5B-Instruct-AWQ",
    BIN_MODEL: "facebook/opt-125m",
    W8A8_MODEL: "RedHatAI/Qwen2.5-0.5B-Instruct-quantized.w8a8"}

# vLLM on CPU (measured, see README): KV cache in GiB, cores kept back for the OS.
CPU_KVCACHE_GIB: str = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
CPU_RESERVED_CORES: str = os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

# Build the AWQ variant: "1" yes, "0" no; unset (None): only where vLLM can run 4-bit models (not on
# AVX2 CPUs, where it would take ~6 minutes for files only an optional lesson cell reads).
_AWQ = os.environ.get("VLLM_COURSE_BUILD_AWQ", "").strip().lower()
BUILD_AWQ: bool | None = None if not _AWQ else _AWQ in {"1", "true", "yes", "on"}
