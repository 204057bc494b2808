"""Checks around the Hugging Face cache: free space before a download, checksums after it.

`check_free_space()` asks the hub for the repo's file sizes (`HfApi().model_info(...,
files_metadata=True)`), subtracts the blobs already cached, and compares with
`shutil.disk_usage()` of the cache's disk. huggingface_hub itself only *warns*, file by file, once
a download has started ("Not enough free disk space to download the file").

`verify()` uses the library's `HfApi.verify_repo_checksums` (what `hf cache verify` runs: the
hub's tree listing against local hashes) or, offline, hashes every blob of a cached revision and
compares it with the blob's own file name: the etag, i.e. the sha256 of an LFS file or the git
blob id (sha1 of `blob <size>\\0<bytes>`) of a small one.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .cache_scan import format_bytes, hub_cache_dir
from .errors import CacheTargetError, InsufficientDiskSpaceError

if TYPE_CHECKING:
    from huggingface_hub import HfApi

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class SpaceCheck:
    """Whether a repo's files fit on the cache's disk: sizes from the hub, free bytes from the OS."""

    repo_id: str
    revision: str
    cache_dir: Path
    disk_path: Path
    nb_files: int
    total_bytes: int
    cached_bytes: int
    free_bytes: int
    keep_free_bytes: int

    @property
    def needed_bytes(self) -> int:
        """Bytes still to download: the selected files minus the blobs already in the cache."""
        return self.total_bytes - self.cached_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes + self.keep_free_bytes <= self.free_bytes

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # noqa: ANN001 - IPython's printer
        printer.text(str(self))

    def __str__(self) -> str:
        keep = f" + {format_bytes(self.keep_free_bytes)} kept free" if self.keep_free_bytes else ""
        return (f"{self.repo_id}@{self.revision[:8]}: {self.nb_files} file(s), {format_bytes(self.total_bytes)}, "
                f"{format_bytes(self.cached_bytes)} already cached -> needs {format_bytes(self.needed_bytes)}{keep}; "
                f"{self.disk_path} has {format_bytes(self.free_bytes)} free -> {'fits' if self.fits else 'does NOT fit'}")


def check_free_space(repo_id: str, *, revision: str | None = None, allow_patterns: list[str] | str | None = None,
                     ignore_patterns: list[str] | str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     keep_free_bytes: int = 0, api: HfApi | None = None, raise_error: bool = True) -> SpaceCheck:
    """Check, before downloading, that a model repo fits in the free space of the cache's disk.

    Args:
        repo_id: model repo id, e.g. "course/SmolLM2-135M-Instruct".
        revision: branch, tag or commit (default: main).
        allow_patterns / ignore_patterns: the same filters you will give `snapshot_download`.
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`); it may not exist yet.
        keep_free_bytes: space that must stay free after the download (a full disk breaks more
            than downloads).
        api: the `HfApi` to ask (default: `HfApi()`, i.e. `HF_ENDPOINT`).
        raise_error: raise when it does not fit (else just return the check).

    Returns:
        A `SpaceCheck` (needed vs free bytes).

    Raises:
        InsufficientDiskSpaceError: it does not fit (and `raise_error`).
        CacheTargetError: unknown repo or revision, or a negative `keep_free_bytes`.

    Example:
        >>> print(check_free_space("course/SmolLM2-135M-Instruct-pt"))      # doctest: +SKIP
        course/SmolLM2-135M-Instruct-pt@710740c8: 6 file(s), 272.6 MB, 0 B already cached -> needs
        272.6 MB; /root/.cache/vllm-course/hf/hub has 72.9 GB free -> fits
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import filter_repo_objects

    if not isinstance(keep_free_bytes, int) or keep_free_bytes < 0:
        raise CacheTargetError(f"keep_free_bytes={keep_free_bytes!r}: pass a byte count >= 0, e.g. 2_000_000_000.")
    api = api or HfApi()
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except RevisionNotFoundError as exc:
        raise CacheTargetError(f"{repo_id} has no revision {revision!r} on {api.endpoint}: "
                               "check the branch, tag or commit.") from exc
    except RepositoryNotFoundError as exc:
        raise CacheTargetError(f"{repo_id} is not a model repo on {api.endpoint}: check the id "
                               "(and HF_ENDPOINT / your token).") from exc
    folder = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    blobs = folder / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs"
    files = list(filter_repo_objects(info.siblings or [], allow_patterns=allow_patterns,
                                     ignore_patterns=ignore_patterns, key=lambda s: s.rfilename))
    total = cached = 0
    for sibling in files:
        size = sibling.lfs.size if sibling.lfs else sibling.size
        if size is None:
            raise CacheTargetError(f"{api.endpoint} sent no size for {repo_id}/{sibling.rfilename}: "
                                   "this check needs model_info(files_metadata=True) sizes.")
        total += size
        etag = sibling.lfs.sha256 if sibling.lfs else sibling.blob_id
        cached += size if etag and (blobs / etag).is_file() else 0
    disk = _existing_folder(folder)
    check = SpaceCheck(repo_id, info.sha or revision or "main", folder, disk, len(files), total, cached,
                       shutil.disk_usage(disk).free, keep_free_bytes)
    if raise_error and not check.fits:
        keep = f" + {format_bytes(keep_free_bytes)} kept free" if keep_free_bytes else ""
        raise InsufficientDiskSpaceError(
            f"{repo_id} needs {format_bytes(check.needed_bytes)}{keep} but {disk} has only "
            f"{format_bytes(check.free_bytes)} free: free space first (cache.plan_not_accessed / "
            "plan_keep_latest, lesson 08) or set HF_HUB_CACHE to a bigger disk before importing huggingface_hub."
        )
    return check


@dataclass(frozen=True)
class BlobCheck:
    """One file whose hash did not match what it should be."""

    path: str
    algorithm: str
    expected: str
    actual: str


@dataclass(frozen=True)
class VerifyReport:
    """The result of `verify()`: how many files were hashed, and which did not match."""

    repo_id: str
    revision: str
    source: str
    checked: int
    mismatches: tuple[BlobCheck, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    path: Path

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # noqa: ANN001 - IPython's printer
        printer.text(str(self))

    def __str__(self) -> str:
        head = (f"{self.repo_id}@{self.revision[:8]} ({self.source}): {self.checked} file(s) checked, "
                f"{len(self.mismatches)} mismatch(es)")
        lines = [head] + [f"  MISMATCH {m.path}: expected {m.algorithm} {m.expected}, got {m.actual}"
                          for m in self.mismatches]
        lines += [f"  missing locally: {p}" for p in self.missing] + [f"  not on the hub: {p}" for p in self.extra]
        return "\n".join(lines)


def verify(repo_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
           offline: bool | None = None, api: HfApi | None = None) -> VerifyReport:
    """Hash a cached revision's files and compare them with what they should be.

    Args:
        repo_id: model repo id.
        revision: branch, tag or commit (default: what `refs/main` points at).
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`).
        offline: True: compare each blob with its own name (no network). False: the library's
            `HfApi.verify_repo_checksums` (`hf cache verify`), which also lists missing and extra
            files. Default: offline when `HF_HUB_OFFLINE` is set.
        api: the `HfApi` to ask when online (default: `HfApi()`).

    Returns:
        A `VerifyReport`; `.ok` is False when a file's bytes do not match.

    Raises:
        CacheTargetError: the repo or revision is not in the cache.

    Example:
        >>> print(verify("course/SmolLM2-135M-Instruct", offline=True))     # doctest: +SKIP
        course/SmolLM2-135M-Instruct@5f0a51e2 (blob names, offline): 2 file(s) checked, 0 mismatch(es)
    """
    from huggingface_hub import HfApi, constants

    folder = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    if offline:
        return _verify_offline(repo_id, revision, folder)
    try:
        result = (api or HfApi()).verify_repo_checksums(repo_id, revision=revision, cache_dir=folder)
    except ValueError as exc:  # the library's "not present in cache" / "could not be resolved"
        raise CacheTargetError(f"{repo_id} ({revision or 'main'}) is not in the cache {folder}: "
                               "download it first (hf download / snapshot_download).") from exc
    bad = tuple(BlobCheck(m["path"], m["algorithm"], m["expected"], m["actual"]) for m in result.mismatches)
    return VerifyReport(repo_id, result.revision, "hub: verify_repo_checksums", result.checked_count, bad,
                        tuple(result.missing_paths), tuple(result.extra_paths), result.verified_path)


def _verify_offline(repo_id: str, revision: str | None, cache_dir: Path) -> VerifyReport:
    """Hash each file of a cached revision and compare with its blob's etag name."""
    from huggingface_hub.file_download import repo_folder_name

    from .hub.repos import file_hashes

    repo_dir = cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = _cached_commit(repo_dir, revision, repo_id)
    snapshot = repo_dir / "snapshots" / commit
    root = os.path.realpath(cache_dir)
    checked, bad, unnamed = 0, [], []
    for file in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        rel = file.relative_to(snapshot).as_posix()
        blob = Path(os.path.abspath(file.parent / os.readlink(file))) if file.is_symlink() else file
        algorithm = "sha256" if _SHA256.match(blob.name) else "git-sha1" if _SHA1.match(blob.name) else None
        if algorithm is None:
            unnamed.append(rel)
            continue
        checked += 1
        real = os.path.realpath(blob)
        if os.path.commonpath([root, real]) != root:
            bad.append(BlobCheck(rel, algorithm, blob.name, f"(not read: it points outside the cache, to {real})"))
            continue
        actual = file_hashes(real)[0 if algorithm == "sha256" else 1]
        if actual != blob.name:
            bad.append(BlobCheck(rel, algorithm, blob.name, actual))
    return VerifyReport(repo_id, commit, "blob names, offline", checked, tuple(bad), (), tuple(unnamed), snapshot)


def _cached_commit(repo_dir: Path, revision: str | None, repo_id: str) -> str:
    if revision and _SHA1.match(revision):
        commit = revision
    else:
        ref = repo_dir / "refs" / (revision or "main")
        if not ref.is_file():
            raise CacheTargetError(f"{repo_id} ({revision or 'main'}) is not in the cache {repo_dir.parent}: "
                                   "download it first, or pass revision=<a cached commit hash>.")
        commit = ref.read_text(encoding="utf-8").strip()
    if not (repo_dir / "snapshots" / commit).is_dir():
        raise CacheTargetError(f"{repo_id}@{commit[:8]} is not in the cache {repo_dir.parent}: "
                               "see cache.scan() for the cached revisions.")
    return commit


def _existing_folder(path: Path) -> Path:
    """The path itself or its nearest existing parent (a fresh cache folder may not exist yet)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(os.path.abspath(os.sep))
