"""Explain: map an exception raised by huggingface_hub, vLLM or the OS to a course error.

`explain()` looks through the whole exception chain and returns the course error
(`vllm_course.errors`) whose message says what was wrong, where (model id, path, endpoint) and
what to do, or None when there is nothing to add. `advise()` does the same for an exception a
learner's own call raised, reading the call's arguments (model, revision, load_format, ...) from
the library frames of its traceback; the notebook exception handler (`vllm_course.cell_errors`)
shows its message under the shortened traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import config, formats
from ..errors import (
    BadModelIdError,
    CacheNotWritableError,
    CorruptedWeightsError,
    CourseError,
    GatedModelError,
    GpuQuantizationError,
    MissingKernelError,
    HubUnreachableError,
    InsufficientDiskSpaceError,
    LocalModelError,
    ModelNotFoundError,
    ModelRevisionError,
    NotCachedError,
    PartialSnapshotError,
    QuantizationMismatchError,
    WeightFormatError,
)
from ..machine import W4A16_OP
from .files import _cached_snapshot, _existing_parent, _looks_local, _missing_in_snapshot, _safetensors_problem
from .gpu import _family, gpu_quantization_problem
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


# Where a learner's call enters the libraries whose errors the course explains.
_LIBRARIES = ("vllm", "huggingface_hub", "vllm_course")


def advise(exc: BaseException) -> CourseError | None:
    """`explain(exc)` with what the failed call was asked for, read from its traceback.

    For an exception raised by a learner's own call (`LLM(...)`, `llm.chat(...)`,
    `snapshot_download(...)`): the first vLLM / huggingface_hub / vllm_course frame of the
    traceback that names a model (`model=`, `repo_id=`, or an `LLM` whose method failed) gives
    the model, revision, load_format, quantization and dtype the messages quote.

    Returns:
        The course error whose message is the advice, or None when there is nothing to add.
    """
    return explain(exc, **call_context(exc.__traceback__))


def call_context(tb: TracebackType | None) -> dict[str, Any]:
    """The arguments of the library call a traceback went through (empty if none names a model)."""
    while tb is not None:
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__", "")).split(".")[0] in _LIBRARIES:
            found = _frame_context(frame.f_locals)
            if found:
                return found
        tb = tb.tb_next
    return {}


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
    `raise explain(exc, ...) from exc`; `advise()` reads the arguments from the traceback instead.

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
    if isinstance(exc, (CourseError, KeyboardInterrupt, SystemExit)):
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
    if isinstance(exc, AttributeError) and W4A16_OP in str(exc):
        from ..machine import quant_support

        return MissingKernelError(missing_kernel_message(model or "this model", _family(quantization) or quantization,
                                                         quant_support()))
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


# -- private helpers -------------------------------------------------------------------------------


def _frame_context(local: dict[str, Any]) -> dict[str, Any]:
    """model, revision, load_format, quantization, dtype from one library frame's locals."""
    kwargs = local.get("kwargs") if isinstance(local.get("kwargs"), dict) else {}
    model = local.get("model", local.get("repo_id"))
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    found = {"model": model if isinstance(model, str) else None,
             "revision": local.get("revision", kwargs.get("revision")),
             "load_format": local.get("load_format", kwargs.get("load_format")),
             "quantization": local.get("quantization", kwargs.get("quantization")),
             "dtype": local.get("dtype", kwargs.get("dtype"))}
    model_config = getattr(local.get("self"), "model_config", None)  # a method of LLM: its engine's config
    if found["model"] is None and isinstance(getattr(model_config, "model", None), str):
        found.update(model=model_config.model, revision=model_config.revision,
                     quantization=model_config.quantization, dtype=str(model_config.dtype))
    if found["model"] is None:
        return {}
    return {k: (v if isinstance(v, str) or v is None else str(v)) for k, v in found.items()}


def _explain_weights(model: str | None, revision: str | None, load_format: str) -> CourseError:
    if model and Path(model).is_dir():
        missing = formats.missing_files(model)
        if missing:
            return LocalModelError(incomplete_folder_message(model, missing))
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


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unreadable"
    return line[:160]
