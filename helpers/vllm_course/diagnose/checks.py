"""Pre-flight: check a model before vLLM or `snapshot_download` starts on it.

`preflight()` catches what otherwise fails slowly or cryptically: the model id, the hub being
reachable (under 5 s instead of ~100 s of retries), the repo and revision existing, gating, the
`load_format` matching a file, `quantization=` matching the checkpoint, the cache being writable
and the disk big enough, and, offline, the snapshot being cached and complete. It returns a
`Preflight` describing what a load will read.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import formats
from ..errors import (
    BadModelIdError,
    CacheNotWritableError,
    CorruptedWeightsError,
    LocalModelError,
    NotCachedError,
    PartialSnapshotError,
    QuantizationMismatchError,
    WeightFormatError,
)
from .env import check_env_applied
from .explainer import explain
from .files import _cached_snapshot, _existing_parent, _is_weight, _looks_local, _missing_in_snapshot, _safetensors_problem
from .gpu import _family
from .messages import (
    bad_id_message,
    corrupted_message,
    incomplete_folder_message,
    missing_folder_message,
    not_cached_message,
    not_writable_message,
    partial_message,
    quantization_message,
    weight_format_message,
)


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


# -- private helpers -------------------------------------------------------------------------------


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

    from ..cache_checks import check_free_space

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
    from ..cache_checks import verify

    report = verify(repo, revision=revision, offline=offline)
    for bad in report.mismatches:
        raise CorruptedWeightsError(corrupted_message(
            f"{repo}'s cached {bad.path}", f"its {bad.algorithm} is {bad.actual[:12]}..., the hub's is "
            f"{bad.expected[:12]}...", f"download it again (`hf download {repo} {bad.path} --force-download`); "
            f"`hf cache verify {repo}` checks every file"))


def _not_writable(cache: Path) -> OSError | None:
    """The OSError met creating a file where the cache is (or will be), or None if that works."""
    where = _existing_parent(cache)
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".vllm-course-write-test-"):
            pass
    except OSError as exc:
        return exc
    return None


def _require_valid_id(model: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as exc:
        raise BadModelIdError(bad_id_message(model)) from exc


def _gb(num: int | None) -> str:
    from ..cache_scan import format_bytes

    return format_bytes(num or 0)


def _replace_seconds(found: Preflight, seconds: float) -> Preflight:
    from dataclasses import replace

    return replace(found, seconds=seconds)
