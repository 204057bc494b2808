"""Checks around the cache: free space before a download, checksums after it (offline).

huggingface_hub only warns, file by file, once a download has started ("Not enough free disk
space"); `check_free_space()` compares the whole repo with the disk first. `hf cache verify` asks
the hub for each file's hash; `verify()` needs no network: a blob's name is its hash.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CacheTargetError, InsufficientDiskSpaceError
from .scan import format_bytes, hub_cache

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from huggingface_hub.utils._verification import FolderVerification

_SHA256, _SHA1 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class SpaceCheck:
    """Whether a repo's files fit on the cache's disk: sizes from the hub, free bytes from the OS."""

    repo_id: str
    revision: str
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

    def __str__(self) -> str:
        keep = f" + {format_bytes(self.keep_free_bytes)} kept free" if self.keep_free_bytes else ""
        return (f"{self.repo_id}@{self.revision[:8]}: {self.nb_files} file(s), {format_bytes(self.total_bytes)}, "
                f"{format_bytes(self.cached_bytes)} already cached -> needs {format_bytes(self.needed_bytes)}{keep}; "
                f"{self.disk_path} has {format_bytes(self.free_bytes)} free -> "
                f"{'fits' if self.fits else 'does NOT fit'}")


def check_free_space(repo_id: str, *, revision: str | None = None, allow_patterns: list[str] | str | None = None,
                     ignore_patterns: list[str] | str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     keep_free_bytes: int = 0, api: HfApi | None = None, raise_error: bool = True) -> SpaceCheck:
    """Check, before downloading, that a model repo fits in the free space of the cache's disk.

    Args:
        repo_id / revision: the model repo, and a branch, tag or commit (default: main).
        allow_patterns / ignore_patterns: the same filters you will give `snapshot_download`.
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`); it may not exist yet.
        keep_free_bytes: space that must stay free after the download (a full disk breaks more than downloads).
        api: the `HfApi` to ask (default: `HfApi()`, i.e. `HF_ENDPOINT`).
        raise_error: raise when it does not fit (else just return the check).

    Returns:
        A `SpaceCheck`: sizes from `model_info(files_metadata=True)`, blobs already cached not counted.

    Raises:
        InsufficientDiskSpaceError: it does not fit (and `raise_error`).
        CacheTargetError: unknown repo or revision, or a negative `keep_free_bytes`.
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
    folder = hub_cache(cache_dir)
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
    disk = next((p for p in (folder, *folder.parents) if p.is_dir()), Path(os.path.abspath(os.sep)))
    check = SpaceCheck(repo_id, info.sha or revision or "main", disk, len(files), total, cached,
                       shutil.disk_usage(disk).free, keep_free_bytes)
    if raise_error and not check.fits:
        keep = f" + {format_bytes(keep_free_bytes)} kept free" if keep_free_bytes else ""
        raise InsufficientDiskSpaceError(
            f"{repo_id} needs {format_bytes(check.needed_bytes)}{keep} but {disk} has only "
            f"{format_bytes(check.free_bytes)} free: free space first (lesson 08's clean-up, or `hf cache prune`) "
            "or set HF_HUB_CACHE to a bigger disk before importing huggingface_hub.")
    return check


def verify(repo_id: str, *, revision: str | None = None,
           cache_dir: str | os.PathLike[str] | None = None) -> FolderVerification:
    """Hash each file of a cached revision and compare it with its blob's name, without the network.

    A blob is named by its etag: the sha256 of an LFS file, the git blob id (sha1 of `blob <size>\\0<bytes>`)
    of a small one. Online, `HfApi().verify_repo_checksums()` (`hf cache verify`) compares with the hub.

    Returns:
        huggingface_hub's `FolderVerification`, as `verify_repo_checksums` returns it: `checked_count`,
        `mismatches`; `extra_paths` are files whose blob is not named by a hash (not from the hub).

    Raises:
        CacheTargetError: the repo or revision is not in the cache.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError
    from huggingface_hub.utils._verification import FolderVerification, Mismatch, compute_file_hash

    folder = hub_cache(cache_dir)
    try:  # the library's own lookup of a cached revision (no network)
        snapshot = Path(snapshot_download(repo_id, revision=revision, cache_dir=folder, local_files_only=True))
    except IncompleteSnapshotError as exc:  # partly downloaded: verify the files that are there
        snapshot = Path(exc.snapshot_path)
    except LocalEntryNotFoundError as exc:
        raise CacheTargetError(f"{repo_id} ({revision or 'main'}) is not in the cache {folder}: download it first "
                               "(hf download / snapshot_download).") from exc
    root = os.path.realpath(folder)
    checked, bad, unnamed = 0, [], []
    for file in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        rel = file.relative_to(snapshot).as_posix()
        blob = Path(os.path.abspath(file.parent / os.readlink(file))) if file.is_symlink() else file
        algorithm = "sha256" if _SHA256.fullmatch(blob.name) else "git-sha1" if _SHA1.fullmatch(blob.name) else None
        if algorithm is None:
            unnamed.append(rel)
            continue
        checked += 1
        real = os.path.realpath(blob)
        if os.path.commonpath([root, real]) != root:
            bad.append(Mismatch(path=rel, expected=blob.name, algorithm=algorithm,
                                actual=f"(not read: it points outside the cache, to {real})"))
        elif (actual := compute_file_hash(Path(real), algorithm)) != blob.name:
            bad.append(Mismatch(path=rel, expected=blob.name, actual=actual, algorithm=algorithm))
    return FolderVerification(revision=snapshot.name, checked_count=checked, mismatches=bad, missing_paths=[],
                              extra_paths=unnamed, verified_path=snapshot)
