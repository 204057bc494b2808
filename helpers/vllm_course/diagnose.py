"""Turn what goes wrong around a model load or download into one line of advice.

Two halves:

- **Pre-flight** (`preflight()`): before vLLM or `snapshot_download` starts, check the things that
  otherwise fail slowly or cryptically: the model id, the hub being reachable (under 5 s instead of
  ~100 s of retries), the repo and revision existing, gating, the `load_format` matching a file,
  `quantization=` matching the checkpoint, the cache being writable and the disk big enough, and,
  offline, the snapshot being cached and complete.
- **Explain** (`explain()`, `diagnosed()`): map an exception raised by huggingface_hub, vLLM or the
  OS to a course error (`vllm_course.errors`) whose message says what was wrong, where (model id,
  path, endpoint) and what to do. The original exception is chained (`raise ... from exc`).

`load()` and `download()` do both around `engine.load()` / `snapshot_download()`; a lesson that
shows the real call wraps it instead::

    from vllm import LLM
    from vllm_course.diagnose import diagnosed, preflight

    preflight("course/SmolLM2-135M-Instruct", load_format="safetensors")
    with diagnosed("course/SmolLM2-135M-Instruct"):
        llm = LLM(model="course/SmolLM2-135M-Instruct", load_format="safetensors", **machine_kwargs())

`check_env_applied()` warns when an HF_* variable was changed after huggingface_hub read it, and
`gpu_quantization_problem()` explains what a GPU kernel needs (testable without a GPU).

`scripts/error_catalogue.py` provokes every message for real and prints them.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import re
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config, formats
from .errors import (
    BadModelIdError,
    CacheNotWritableError,
    CorruptedWeightsError,
    CourseError,
    GatedModelError,
    GpuQuantizationError,
    HubUnreachableError,
    InsufficientDiskSpaceError,
    LocalModelError,
    ModelNotFoundError,
    ModelRevisionError,
    NotCachedError,
    PartialSnapshotError,
    QuantizationMismatchError,
    StaleEnvWarning,
    WeightFormatError,
)

# Families of `quantization=` values that read the same checkpoint format (vLLM 0.32 names).
QUANT_FAMILIES: dict[str, frozenset[str]] = {
    "gptq": frozenset({"gptq", "auto_gptq", "gptq_marlin"}),
    "awq": frozenset({"awq", "auto_awq", "awq_marlin"}),
    "compressed-tensors": frozenset({"compressed-tensors"}),
}
# A course repo of each family, for "load ... instead" advice.
_QUANT_EXAMPLE = {"gptq": config.GPTQ_MODEL, "awq": config.AWQ_MODEL}

# What vLLM 0.32's CUDA kernels need (tests/test_bad_inputs.py checks these against the installed
# vLLM): AutoGPTQConfig / AutoAWQConfig.get_min_capability(), MarlinLinearKernel (GPTQ/AWQ 4-bit
# on 7.5+), ExllamaLinearKernel (GPTQ on 6.0+, float16 activations only), and bfloat16 itself
# (Ampere, 8.0+). Capabilities are written as vLLM does: major * 10 + minor.
METHOD_MIN_CAPABILITY = {"gptq": 60, "awq": 75}
MARLIN_MIN_CAPABILITY = 75
BF16_MIN_CAPABILITY = 80
QUANT_ACT_DTYPES = ("float16", "bfloat16")

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_START = "start the course hub (`python -m vllm_course hub start`)"
_NET_CHECK = "check your network connection or proxy"
# Weight-like files a load does not download (other frameworks' formats).
_OTHER_WEIGHTS = (".h5", ".msgpack", ".onnx", ".ckpt", ".pth", ".gguf", ".ot", ".tflite")


# -- pre-flight ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preflight:
    """What `preflight()` found: where the model comes from and what a load will read.

    `source` is "folder" (a local path), "cache" (offline, from the HF cache) or "hub" (online).
    `download_bytes` is what is still to fetch (0 when everything is cached; None for a folder).
    """

    model: str
    source: str
    revision: str | None
    files: tuple[str, ...]
    weight_files: tuple[str, ...]
    quantization: str | None
    download_bytes: int | None
    free_bytes: int | None
    endpoint: str | None
    seconds: float

    def __str__(self) -> str:
        where = {"folder": "local folder", "cache": "the HF cache (offline)"}.get(self.source, self.endpoint or "hub")
        parts = [f"{self.model}: ready to load from {where}",
                 f"weights {', '.join(self.weight_files) or '-'}"]
        if self.quantization:
            parts.append(f"quantization {self.quantization}")
        if self.download_bytes is not None and self.source == "hub":
            free = f" of {_gb(self.free_bytes)} free" if self.free_bytes is not None else ""
            parts.append(f"to download {_gb(self.download_bytes)}{free}")
        return ", ".join(parts) + f" (checked in {self.seconds:.1f} s)"


def preflight(
    model: str | os.PathLike[str],
    *,
    revision: str | None = None,
    load_format: str | None = "auto",
    quantization: str | None = None,
    allow_patterns: list[str] | str | None = None,
    verify: bool = False,
    keep_free_bytes: int = 0,
    timeout: float = 3.0,
) -> Preflight:
    """Check, before loading or downloading, everything that would otherwise fail late or slowly.

    Use it right before `LLM(...)` or `snapshot_download(...)`: each check raises a course error
    with one line of advice, and the hub is probed with a short timeout, so a stopped hub is
    reported in seconds (huggingface_hub and vLLM would retry for up to ~100 s first).

    Args:
        model: a Hub repo id (`org/name`) or the path of a local model folder.
        revision: branch, tag or commit (default: main).
        load_format: the `LLM(load_format=...)` you will pass; None skips the weight-file check
            (a plain download).
        quantization: the `LLM(quantization=...)` you will pass, if any.
        allow_patterns: for a download, the same filter you give `snapshot_download` (sizes only
            count those files); by default a load's files: config, tokenizer, the chosen weights.
        verify: also hash the cached files against their blob names (offline) or the hub's
            checksums (`hf cache verify`), to catch a corrupted weight file before loading it.
        keep_free_bytes: space that must stay free on the cache's disk after the download.
        timeout: seconds to wait for the hub's first answer.

    Returns:
        A `Preflight` describing the source, weight files, quantization and download size.

    Raises:
        BadModelIdError, LocalModelError, HubUnreachableError, ModelNotFoundError,
        ModelRevisionError, GatedModelError, NotCachedError, PartialSnapshotError,
        WeightFormatError, QuantizationMismatchError, CacheNotWritableError,
        InsufficientDiskSpaceError, CorruptedWeightsError: see `errors.py`.

    Example:
        >>> print(preflight("course/SmolLM2-135M-Instruct"))               # doctest: +SKIP
        course/SmolLM2-135M-Instruct: ready to load from http://127.0.0.1:8765, weights
        model.safetensors, to download 272.6 MB of 72.9 GB free (checked in 0.1 s)
    """
    start = time.perf_counter()
    check_env_applied()
    model = os.fspath(model)
    if _looks_local(model):
        found = _preflight_folder(Path(model).expanduser(), model, load_format, quantization, verify)
    else:
        _require_valid_id(model)
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            found = _preflight_cache(model, revision, load_format, quantization, verify)
        else:
            found = _preflight_hub(model, revision, load_format, quantization, allow_patterns, verify,
                                   keep_free_bytes, timeout)
    return _replace_seconds(found, time.perf_counter() - start)


# -- explaining exceptions ---------------------------------------------------------------------------


def explain(
    exc: BaseException,
    *,
    model: str | None = None,
    revision: str | None = None,
    load_format: str | None = None,
    quantization: str | None = None,
    dtype: Any = None,
) -> CourseError | None:
    """Return the course error that explains `exc`, or None when there is nothing to add.

    Looks through the whole chain (`__cause__` / `__context__`): transformers and vLLM wrap the
    huggingface_hub error that says what really happened. The caller chains it:
    `raise explain(exc, ...) from exc` (or uses `diagnosed()`, which does).

    Args:
        exc: what was raised.
        model, revision, load_format, quantization, dtype: what the call was asked for (they make
            the message name the repo, list its files, quote the argument).

    Example:
        >>> try:                                                            # doctest: +SKIP
        ...     LLM(model="course/Nope")
        ... except Exception as exc:
        ...     print(explain(exc, model="course/Nope"))
        course/Nope does not exist on http://127.0.0.1:8765 (404 RepoNotFound): check the spelling
        (course models: `python -m vllm_course models list`; did you mean ...?) or, for a private
        repo, log in with `hf auth login`.
    """
    if isinstance(exc, (CourseError, KeyboardInterrupt, SystemExit)) and not _is_format_error_to_redo(exc):
        return None
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    chain = _chain(exc)
    endpoint = constants.ENDPOINT
    repo = model if model and not _looks_local(model) else None
    text = "\n".join(str(e) for e in chain)

    if (bad := _first(chain, hf.HFValidationError)) is not None:
        if model and _looks_local(model):
            return LocalModelError(missing_folder_message(model))
        return BadModelIdError(bad_id_message(model or _quoted_id(str(bad))))
    if (gated := _first(chain, hf.GatedRepoError)) is not None:
        return GatedModelError(gated_message(repo or _repo_from_url(gated), endpoint, _status(gated)))
    if (rev := _first(chain, hf.RevisionNotFoundError)) is not None:
        asked = revision or (re.findall(r"/resolve/([^/\s]+)/", str(rev)) or ["?"])[0]
        return ModelRevisionError(revision_message(repo or _repo_from_url(rev), asked, endpoint))
    if (missing := _first(chain, hf.RepositoryNotFoundError)) is not None:
        name = repo or _repo_from_url(missing)
        return ModelNotFoundError(not_found_message(name, endpoint, _suggest(name)))
    if _first_errno(chain, errno.ENOSPC) is not None:
        return InsufficientDiskSpaceError(disk_filled_message(repo or model or "the model", constants.HF_HUB_CACHE))
    if (denied := _first_errno(chain, errno.EROFS, errno.EACCES, errno.EPERM)) is not None and _in_hf_home(denied):
        return CacheNotWritableError(not_writable_message(_existing_parent(Path(constants.HF_HUB_CACHE)),
                                                          os.strerror(denied.errno), repo or model or "the model"))
    if (incomplete := _first(chain, hf.IncompleteSnapshotError)) is not None and constants.HF_HUB_OFFLINE:
        snap = Path(incomplete.snapshot_path)
        return PartialSnapshotError(partial_message(repo or "the model", snap, _missing_in_snapshot(snap)))
    transport = _transport_error(chain)
    if transport is not None and not constants.HF_HUB_OFFLINE:
        return HubUnreachableError(unreachable_message(endpoint, _transport_reason(transport), repo,
                                                       mid_download=_mid_download(chain)))
    if _first(chain, hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled) is not None and constants.HF_HUB_OFFLINE:
        return NotCachedError(not_cached_message(repo or model or "the model", revision, constants.HF_HUB_CACHE))
    if "Cannot find any model weights" in text:
        return _explain_weights(model, revision, load_format or "auto")
    if (m := re.search(r"Quantization method specified in the model config \(([\w-]+)\) does not match "
                       r"the quantization method specified in the `quantization` argument \(([\w-]+)\)", text)):
        return QuantizationMismatchError(quantization_message(m.group(2), model or "the model", m.group(1)))
    if (m := re.search(r"Cannot find the config file for ([\w-]+)", text)):
        return QuantizationMismatchError(quantization_message(m.group(1), model or "the model", None))
    if (gpu := _explain_gpu(text, quantization, dtype)) is not None:
        return GpuQuantizationError(gpu)
    if re.search(r"SafetensorError|Error while deserializing header|PytorchStreamReader failed", text) or \
            any(type(e).__name__ == "SafetensorError" for e in chain):
        return CorruptedWeightsError(_explain_corrupted(model, revision, _short(text)))
    return None


@contextlib.contextmanager
def diagnosed(model: str | os.PathLike[str] | None = None, **context: Any) -> Iterator[None]:
    """Run the block; turn what it raises into a course error with advice (original chained).

    A KeyboardInterrupt (Ctrl-C, the notebook's stop button) first releases whatever half-built
    engine the interrupted `LLM(...)` left (see `release_interrupted`), then propagates.

    Args:
        model: the model the block loads or downloads (named in messages).
        context: revision, load_format, quantization, dtype, as passed to the call.
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        release_interrupted(exc)
        raise
    except Exception as exc:
        course_error = explain(exc, model=os.fspath(model) if model is not None else None, **context)
        if course_error is None:
            raise
        raise course_error from exc


def load(model: str | os.PathLike[str], *, quiet: bool = True, verify: bool = False, **llm_kwargs: Any):
    """Pre-flight, then `engine.load(model, **llm_kwargs)`, explaining what goes wrong.

    Returns:
        The engine and its `LoadReport`, as `engine.load` does.

    Raises:
        A course error (see `preflight` and `explain`), or what vLLM raised if there is no advice.
    """
    from . import engine

    model = os.fspath(model)
    context = {k: llm_kwargs.get(k) for k in ("revision", "quantization", "dtype")}
    preflight(model, revision=context["revision"], load_format=llm_kwargs.get("load_format", "auto"),
              quantization=context["quantization"], verify=verify)
    with diagnosed(model, load_format=llm_kwargs.get("load_format", "auto"), **context):
        return engine.load(model, quiet=quiet, **llm_kwargs)


def download(repo_id: str, *, revision: str | None = None, timeout: float = 3.0, **snapshot_kwargs: Any) -> str:
    """Pre-flight, then `snapshot_download(repo_id, ...)`, explaining what goes wrong.

    Returns:
        The snapshot folder, as `snapshot_download` does.
    """
    from huggingface_hub import snapshot_download

    preflight(repo_id, revision=revision, load_format=None, allow_patterns=snapshot_kwargs.get("allow_patterns"),
              timeout=timeout)
    with diagnosed(repo_id, revision=revision):
        return snapshot_download(repo_id, revision=revision, **snapshot_kwargs)


def release_interrupted(exc: BaseException) -> None:
    """Free what an interrupted `LLM(...)` left behind, so the next load starts clean.

    A KeyboardInterrupt mid-load leaves the half-built engine reachable from the traceback's
    frames (Jupyter keeps the last traceback: ~1.7 GiB of KV cache and weights on the course
    model) and vLLM's process groups initialised. This clears those frames' locals, tears the
    groups down and collects, then notes on the exception that it did.
    """
    traceback.clear_frames(exc.__traceback__)
    with contextlib.suppress(Exception):
        if "vllm" in sys.modules:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
    gc.collect()
    with contextlib.suppress(Exception):
        from . import engine

        if engine.has_gpu():
            import torch

            torch.cuda.empty_cache()
    note = "vllm_course: the interrupted load was released; the next load starts clean."
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


# -- env vars read at import ---------------------------------------------------------------------


@dataclass(frozen=True)
class EnvMismatch:
    """An HF_* variable whose current value is not the one huggingface_hub uses."""

    name: str
    env_value: str | None
    in_effect: str

    def __str__(self) -> str:
        now = f"{self.name}={self.env_value} was set" if self.env_value is not None else f"{self.name} was unset"
        verb = "set" if self.env_value is not None else "unset"
        return (f"{now} after huggingface_hub was imported, so it has no effect (huggingface_hub still uses "
                f"{self.in_effect}): restart the kernel and {verb} it before importing vllm or huggingface_hub "
                "(the first cell's course.setup() does).")


def check_env_applied(*, warn: bool = True) -> tuple[EnvMismatch, ...]:
    """Compare HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT with what huggingface_hub read.

    huggingface_hub reads them once, at import (vLLM imports it), so setting one later in a
    notebook does nothing. Call this after changing one (preflight() does).

    Args:
        warn: also issue a `StaleEnvWarning` per variable that has no effect.

    Returns:
        One `EnvMismatch` per variable whose change has no effect (empty if huggingface_hub is
        not imported yet: the new values will be read at import).
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return ()
    env = os.environ
    home = _expand(env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or
                                                      os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"))
    found = []
    if os.path.normpath(home) != os.path.normpath(constants.HF_HOME):
        found.append(EnvMismatch("HF_HOME", env.get("HF_HOME"), str(constants.HF_HOME)))
    elif "HF_HUB_CACHE" in env and os.path.normpath(_expand(env["HF_HUB_CACHE"])) != os.path.normpath(constants.HF_HUB_CACHE):
        found.append(EnvMismatch("HF_HUB_CACHE", env["HF_HUB_CACHE"], str(constants.HF_HUB_CACHE)))
    offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in {"1", "ON", "YES", "TRUE"}
    if offline != bool(constants.HF_HUB_OFFLINE):
        found.append(EnvMismatch("HF_HUB_OFFLINE", env.get("HF_HUB_OFFLINE"), f"HF_HUB_OFFLINE={int(constants.HF_HUB_OFFLINE)}"))
    endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    if endpoint != constants.ENDPOINT:
        found.append(EnvMismatch("HF_ENDPOINT", env.get("HF_ENDPOINT"), constants.ENDPOINT))
    if warn:
        for item in found:
            warnings.warn(StaleEnvWarning(str(item)), stacklevel=2)
    return tuple(found)


# -- GPU kernels -------------------------------------------------------------------------------------


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


def check_gpu_quantization(method: str | None, dtype: Any = "auto") -> None:
    """Raise before loading if this machine's GPU cannot run `method` with `dtype` (no-op on CPU).

    Raises:
        GpuQuantizationError: the message from `gpu_quantization_problem` for this GPU.
    """
    import torch

    if not torch.cuda.is_available():
        return
    major, minor = torch.cuda.get_device_capability()
    problem = gpu_quantization_problem(method, dtype, major * 10 + minor, torch.cuda.get_device_name())
    if problem:
        raise GpuQuantizationError(problem)


# -- the messages (one line each: what, where, what to do) ----------------------------------------


def bad_id_message(model: str) -> str:
    return (f"model={model!r} is neither an existing folder nor a valid Hub repo id: write it as 'org/name' "
            f"(letters, digits, '-', '_', '.'), e.g. {config.BASE_MODEL}, or give the path of a model folder.")


def missing_folder_message(path: str) -> str:
    return f"{path} does not exist: check the path, or pass a Hub repo id such as {config.BASE_MODEL}."


def incomplete_folder_message(path: str, missing: list[str]) -> str:
    return (f"{path} is not a loadable model folder: it lacks {_and(missing)}; copy the whole repo there "
            f"(`hf download <org/name> --local-dir {path}`) or pass the Hub repo id instead.")


def not_found_message(repo: str, endpoint: str, suggestion: str | None = None) -> str:
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return (f"{repo} does not exist on {endpoint} (404 RepoNotFound): check the spelling (course models: "
            f"`python -m vllm_course models list`{hint}) or, for a private repo, log in with `hf auth login`.")


def revision_message(repo: str, revision: str, endpoint: str) -> str:
    return (f"{repo} has no revision {revision!r} on {endpoint} (404 RevisionNotFound): pass a branch, tag or full "
            "40-character commit sha that the repo has, or leave revision= out for 'main'.")


def gated_message(repo: str, endpoint: str, status: int | None) -> str:
    why = "this request sent no token (401" if status != 403 else "the token sent was refused (403"
    return (f"{repo} is gated and {why} on {endpoint}): accept its terms on the repo page, then `hf auth login` "
            "or set HF_TOKEN (course hub: a token listed in the repo's .gated file).")


def not_cached_message(repo: str, revision: str | None, cache: str | os.PathLike[str]) -> str:
    what = f"{repo}@{revision}" if revision and revision != "main" else repo
    return (f"{what} is not in the cache {cache} and HF_HUB_OFFLINE=1 forbids downloading it: download it once "
            f"while online (`hf download {repo}`), or unset HF_HUB_OFFLINE and restart the kernel.")


def partial_message(repo: str, snapshot: Path, missing: list[str]) -> str:
    return (f"{repo} is only partly cached in {snapshot}: it lacks {_and(missing) or 'files'}, and HF_HUB_OFFLINE=1 "
            f"forbids fetching them: run `hf download {repo}` while online, then load again.")


def unreachable_message(endpoint: str, reason: str, repo: str | None = None, *, mid_download: bool = False) -> str:
    fix = _HUB_START if _is_loopback(endpoint) else _NET_CHECK
    if mid_download and repo:
        return (f"HF_ENDPOINT={endpoint} stopped answering while {repo} was downloading ({reason}): no partial file "
                f"was kept; {fix}, then run it again (it starts over: huggingface_hub 2.4 resumes only within one call).")
    return (f"HF_ENDPOINT={endpoint} does not answer ({reason}) and HF_HUB_OFFLINE is not set: {fix}, or set "
            "HF_HUB_OFFLINE=1 before importing vllm/huggingface_hub to load from the cache.")


def weight_format_message(where: str, load_format: str, names: list[str] | tuple[str, ...]) -> str:
    wanted = " or ".join(formats.LOAD_FORMAT_PATTERNS.get(load_format, (load_format,)))
    weights = [n for n in names if Path(n).suffix in formats.WEIGHT_SUFFIXES or n.endswith(_OTHER_WEIGHTS)]
    have = ", ".join(weights) or "no weight files"
    return f"load_format={load_format!r} reads {wanted} but {where} has {have}: use load_format='auto' or convert the weights."


def quantization_message(asked: str, model: str, in_config: str | None) -> str:
    if in_config is None:
        family = _family(asked)
        example = f" such as {_QUANT_EXAMPLE[family]}" if family in _QUANT_EXAMPLE else ""
        return (f"quantization={asked!r} contradicts {model}: its config.json has no quantization_config (an "
                f"unquantized checkpoint): drop quantization= or load a {family or asked} checkpoint{example}.")
    return (f"quantization={asked!r} contradicts {model}: its config.json says quant_method={in_config!r}: drop "
            f"quantization= (vLLM reads it from config.json) or pass quantization={in_config!r}.")


def not_writable_message(cache: Path, reason: str, repo: str) -> str:
    return (f"{cache} is not writable ({reason}), so {repo} cannot be downloaded into the HF cache: point HF_HOME "
            "(or HF_HUB_CACHE) at a writable folder before importing huggingface_hub or vllm, or set HF_HUB_OFFLINE=1 "
            "to use only what is cached.")


def disk_filled_message(repo: str, cache: str | os.PathLike[str]) -> str:
    return (f"The disk of {cache} filled up while downloading {repo} (No space left on device): free space "
            "(cache.plan_not_accessed / plan_keep_latest, lesson 08) or set HF_HUB_CACHE to a bigger disk before "
            "importing huggingface_hub, then download again.")


def corrupted_message(what: str, detail: str, fix: str) -> str:
    return f"{what} is corrupted ({detail}): {fix}."


# -- private helpers ---------------------------------------------------------------------------------


def _preflight_folder(path: Path, model: str, load_format: str | None, quantization: str | None,
                      verify: bool) -> Preflight:
    if not path.is_dir():
        raise LocalModelError(missing_folder_message(model))
    try:
        formats.require_complete(path)
    except LocalModelError as exc:
        raise LocalModelError(incomplete_folder_message(model, formats.missing_files(path))) from exc
    report = formats.inspect_folder(path)
    picked = report.picks("auto")
    if load_format in formats.LOAD_FORMAT_PATTERNS:
        picked = formats.check_load_format(path, load_format)
    _check_quantization(quantization, model, report.quantization)
    if verify:
        for name in picked:
            detail = _safetensors_problem(path / name) if name.endswith(".safetensors") else None
            if detail:
                raise CorruptedWeightsError(corrupted_message(
                    str(path / name), detail, "copy or convert the model into that folder again"))
    files = tuple(sorted(p.name for p in path.iterdir() if p.is_file()))
    return Preflight(model, "folder", None, files, picked, report.quantization, None, None, None, 0.0)


def _preflight_cache(repo: str, revision: str | None, load_format: str | None, quantization: str | None,
                     verify: bool) -> Preflight:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except IncompleteSnapshotError as exc:
        snap = Path(exc.snapshot_path)
        raise PartialSnapshotError(partial_message(repo, snap, _missing_in_snapshot(snap))) from exc
    except LocalEntryNotFoundError as exc:
        raise NotCachedError(not_cached_message(repo, revision, constants.HF_HUB_CACHE)) from exc
    missing = _missing_in_snapshot(snapshot)
    if missing:
        raise PartialSnapshotError(partial_message(repo, snapshot, missing))
    files = tuple(sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()))
    picked = _check_format(f"the cached {repo}", load_format, files)
    in_config = formats.inspect_folder(snapshot).quantization
    _check_quantization(quantization, repo, in_config)
    if verify:
        _verify_cached(repo, snapshot.name, offline=True)
    return Preflight(repo, "cache", snapshot.name, files, picked, in_config, 0, None, None, 0.0)


def _preflight_hub(repo: str, revision: str | None, load_format: str | None, quantization: str | None,
                   allow_patterns: list[str] | str | None, verify: bool, keep_free_bytes: int,
                   timeout: float) -> Preflight:
    from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url

    from .cache_checks import check_free_space

    api = HfApi()
    context = {"model": repo, "revision": revision, "load_format": load_format, "quantization": quantization}
    try:
        info = api.model_info(repo, revision=revision, files_metadata=True, timeout=timeout)
        if info.gated:
            get_hf_file_metadata(hf_hub_url(repo, "config.json", revision=info.sha), timeout=timeout)
    except Exception as exc:
        course_error = explain(exc, **context)
        if course_error is None:
            raise
        raise course_error from exc
    files = tuple(sorted(s.rfilename for s in info.siblings or ()))
    picked = _check_format(f"{repo} on {api.endpoint}", load_format, files)
    in_config = ((info.config or {}).get("quantization_config") or {}).get("quant_method")
    _check_quantization(quantization, repo, in_config)
    cache = Path(constants.HF_HUB_CACHE)
    problem = _not_writable(cache)
    if problem is not None:
        raise CacheNotWritableError(not_writable_message(_existing_parent(cache), os.strerror(problem.errno), repo)) \
            from problem
    if allow_patterns is None and load_format is not None:
        allow_patterns = [f for f in files if f in picked or not _is_weight(f)]
    space = check_free_space(repo, revision=info.sha, allow_patterns=allow_patterns, api=api,
                             keep_free_bytes=keep_free_bytes)
    if verify and info.sha and _cached_snapshot(repo, info.sha) is not None:
        _verify_cached(repo, info.sha, offline=False)
    return Preflight(repo, "hub", info.sha, files, picked, in_config, space.needed_bytes, space.free_bytes,
                     api.endpoint, 0.0)


def _check_format(where: str, load_format: str | None, files: tuple[str, ...]) -> tuple[str, ...]:
    if load_format is None:
        return tuple(f for f in files if _is_weight(f))
    if load_format not in formats.LOAD_FORMAT_PATTERNS:
        return ()  # dummy, gguf, tensorizer...: not a file-pattern format; vLLM decides
    picked = formats.select_weights(list(files), load_format)
    if not picked:
        raise WeightFormatError(weight_format_message(where, load_format, files))
    return picked


def _check_quantization(asked: str | None, model: str, in_config: str | None) -> None:
    if not asked:
        return
    family = _family(asked)
    if in_config is None:
        if family is not None:  # gptq/awq/compressed-tensors need a quantized checkpoint
            raise QuantizationMismatchError(quantization_message(asked, model, None))
        return  # e.g. fp8: vLLM quantizes an unquantized checkpoint on the fly (GPU)
    if asked != in_config and family != _family(in_config):
        raise QuantizationMismatchError(quantization_message(asked, model, in_config))


def _verify_cached(repo: str, revision: str, offline: bool) -> None:
    from .cache_checks import verify

    report = verify(repo, revision=revision, offline=offline)
    for bad in report.mismatches:
        raise CorruptedWeightsError(corrupted_message(
            f"{repo}'s cached {bad.path}", f"its {bad.algorithm} is {bad.actual[:12]}..., the hub's is "
            f"{bad.expected[:12]}...", f"download it again (`hf download {repo} {bad.path} --force-download`); "
            f"`hf cache verify {repo}` checks every file"))


def _explain_weights(model: str | None, revision: str | None, load_format: str) -> WeightFormatError:
    if model and Path(model).is_dir():
        names = [p.name for p in Path(model).iterdir() if p.is_file()]
        return WeightFormatError(weight_format_message(model, load_format, sorted(names)))
    from huggingface_hub import HfApi, constants

    names: list[str] = []
    where = f"{model} on {constants.ENDPOINT}"
    with contextlib.suppress(Exception):
        if constants.HF_HUB_OFFLINE:
            snap = _cached_snapshot(model or "", revision)
            names = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()) if snap else []
            where = f"the cached {model}"
        else:
            names = sorted(s.rfilename for s in HfApi().model_info(model or "", revision=revision, timeout=3).siblings or ())
    return WeightFormatError(weight_format_message(where, load_format, names))


def _explain_gpu(text: str, quantization: str | None, dtype: Any) -> str | None:
    m = re.search(r"The quantization method ([\w-]+) is not supported for the current GPU\. Minimum capability: "
                  r"(\d+)\. Current capability: (\d+)", text)
    if m:
        method, need, have = m.group(1), int(m.group(2)), int(m.group(3))
        return gpu_quantization_problem(method, dtype, have) or (
            f"quantization={method!r} needs compute capability {need // 10}.{need % 10} or higher but this GPU is "
            f"{have // 10}.{have % 10}: load the unquantized model ({config.BASE_MODEL}) or use a newer GPU.")
    m = re.search(r"torch\.(\w+) is not supported for quantization method ([\w-]+)", text)
    if m:  # vLLM names its own class (auto_gptq); the learner knows the checkpoint's method (gptq)
        return gpu_quantization_problem(quantization or _family(m.group(2)) or m.group(2), m.group(1), 999)
    if "Failed to find a kernel that can implement the WNA16 linear layer" in text:
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability()
                return gpu_quantization_problem(quantization, dtype, major * 10 + minor, torch.cuda.get_device_name())
    return None


def _explain_corrupted(model: str | None, revision: str | None, detail: str) -> str:
    if model and Path(model).is_dir():
        for path in sorted(Path(model).glob("*.safetensors")):
            problem = _safetensors_problem(path)
            if problem:
                return corrupted_message(str(path), problem, "copy or convert the model into that folder again")
        return corrupted_message(f"a weight file in {model}", detail, "copy or convert the model into that folder again")
    snap = _cached_snapshot(model or "", revision)
    if snap is not None:
        for path in sorted(snap.rglob("*.safetensors")):
            problem = _safetensors_problem(path)
            if problem:
                name = path.relative_to(snap).as_posix()
                return corrupted_message(f"{model}'s cached {name}", problem,
                                         f"download it again (`hf download {model} {name} --force-download`); "
                                         f"`hf cache verify {model}` checks every file")
    return corrupted_message(f"a weight file of {model}", detail,
                             f"`hf cache verify {model}` finds it; download it again with --force-download")


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read whole (None if its header covers the file exactly)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > min(size - 8, 100 * 2**20):
                return f"header length {length} B does not fit in the {size} B file"
            header = json.loads(fh.read(length))
    except (OSError, struct.error, ValueError) as exc:
        return f"unreadable header: {type(exc).__name__}"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{size} B on disk, its header describes {expected} B: truncated or padded"
    return None


def _missing_in_snapshot(snapshot: Path) -> list[str]:
    """Files a load needs that a cached snapshot lacks: its cached tree listing, else config/weights/tokenizer."""
    tree = snapshot.parent.parent / "trees" / f"{snapshot.name}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
        listed = json.loads(tree.read_text(encoding="utf-8"))["files"]
        return sorted(name for name in listed if not (snapshot / name).is_file())
    return formats.missing_files(snapshot) if snapshot.is_dir() else [f"the snapshot itself ({snapshot})"]


def _cached_snapshot(repo: str, revision: str | None) -> Path | None:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = revision if revision and _COMMIT.match(revision) else None
    if commit is None:
        with contextlib.suppress(OSError):
            commit = (folder / "refs" / (revision or "main")).read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit if commit else None
    return snap if snap is not None and snap.is_dir() else None


def _not_writable(cache: Path) -> OSError | None:
    """The OSError met creating a file where the cache is (or will be), or None if that works."""
    where = _existing_parent(cache)
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".vllm-course-write-test-"):
            pass
    except OSError as exc:
        return exc
    return None


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(os.path.abspath(os.sep))


def _require_valid_id(model: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as exc:
        raise BadModelIdError(bad_id_message(model)) from exc


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(model))


def _is_loopback(url: str) -> bool:
    return any(f"//{host}" in url for host in _LOOPBACK)


def _is_weight(name: str) -> bool:
    return Path(name).suffix in formats.WEIGHT_SUFFIXES or name.endswith(_OTHER_WEIGHTS)


def _family(method: str | None) -> str | None:
    for family, names in QUANT_FAMILIES.items():
        if method in names:
            return family
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 30:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__]
    return seen


def _first(chain: list[BaseException], *types: type[BaseException]) -> Any:
    return next((e for e in chain if isinstance(e, types)), None)


def _first_errno(chain: list[BaseException], *codes: int) -> OSError | None:
    return next((e for e in chain if isinstance(e, OSError) and e.errno in codes), None)


def _transport_error(chain: list[BaseException]) -> BaseException | None:
    kinds = []
    for name in ("httpx", "httpx2"):
        module = sys.modules.get(name)
        if module is not None:
            kinds.append(module.TransportError)
    return next((e for e in chain if isinstance(e, (*kinds, ConnectionError, TimeoutError))
                 and not isinstance(e, CourseError)), None)


def _transport_reason(exc: BaseException) -> str:
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, TimeoutError) or "Timeout" in type(item).__name__:
            return "timed out"
        if "Name or service not known" in str(item) or "nodename nor servname" in str(item):
            return "unknown host"
    return type(exc).__name__


def _mid_download(chain: list[BaseException]) -> bool:
    return any("peer closed connection without sending complete message body" in str(e) for e in chain)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _repo_from_url(exc: BaseException) -> str:
    m = re.search(r"https?://[^/\s]+/(?:api/models/)?([\w.-]+/[\w.-]+)", str(exc))
    return m.group(1) if m else "the repo"


def _quoted_id(text: str) -> str:
    quoted = re.findall(r"'([^']*)'", text)
    return quoted[-1] if quoted else text


def _suggest(repo: str) -> str | None:
    """A repo of the same org on the hub whose name is close (typo help), if the hub says so quickly."""
    import difflib

    from huggingface_hub import HfApi

    if "/" not in repo:
        return None
    org = repo.split("/")[0]
    try:
        names = [m.id for m in HfApi().list_models(author=org, limit=200)]
    except Exception:  # noqa: BLE001 - a suggestion is optional
        return None
    close = difflib.get_close_matches(repo, names, n=1, cutoff=0.75)
    return close[0] if close else None


def _in_hf_home(exc: OSError) -> bool:
    from huggingface_hub import constants

    target = os.path.abspath(str(exc.filename or ""))
    roots = {os.path.abspath(constants.HF_HOME), os.path.abspath(constants.HF_HUB_CACHE)}
    return bool(exc.filename) and any(target == r or target.startswith(r + os.sep) or r.startswith(target + os.sep)
                                      for r in roots)


def _is_format_error_to_redo(exc: BaseException) -> bool:
    """engine.load's WeightFormatError for a hub id carries no file list: explain() adds it."""
    return isinstance(exc, WeightFormatError) and "Cannot find any model weights" in str(exc.__cause__ or "")


def _and(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unreadable"
    return line[:160]


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def _gb(num: int | None) -> str:
    from .cache_scan import format_bytes

    return format_bytes(num or 0)


def _replace_seconds(found: Preflight, seconds: float) -> Preflight:
    from dataclasses import replace

    return replace(found, seconds=seconds)
