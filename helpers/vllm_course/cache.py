"""The Hugging Face cache: what huggingface_hub's scanner and delete strategy lack. `table()` (ages in days),
`safe_delete_revisions()` (nothing outside the cache), `check_free_space()` before a download, `verify()` after."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .console import table as text_table
from .errors import CacheSafetyError, CacheTargetError, InsufficientDiskSpaceError

if TYPE_CHECKING:  # huggingface_hub reads HF_HOME / HF_ENDPOINT when imported: import it late
    from huggingface_hub import CachedRepoInfo, CachedRevisionInfo, DeleteCacheStrategy, HfApi, HFCacheInfo
    from huggingface_hub.utils._verification import FolderVerification

DAY = 86_400.0
_SHA256, _SHA1 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{40}")


def format_bytes(num: float) -> str:
    """Given a byte count, return it with a decimal unit: `format_bytes(269060552) == '269.1 MB'`."""
    if abs(num) < 1000:
        return f"{int(num)} B"
    value = float(num)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if abs(round(value, 1)) < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def hub_cache(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`cache_dir`, or else the HF_HUB_CACHE this process's huggingface_hub read at its import."""
    from huggingface_hub import constants
    return Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()


def revisions(info: HFCacheInfo) -> list[tuple[CachedRepoInfo, CachedRevisionInfo]]:
    """Every cached revision with its repo: repos by id, each repo's revisions newest first."""
    return [(repo, rev) for repo in sorted(info.repos, key=lambda r: (r.repo_id, r.repo_type))
            for rev in sorted(repo.revisions, key=lambda r: (-r.last_modified, r.commit_hash))]


def table(info: HFCacheInfo, by: str = "revision") -> str:
    """Given a scan, return a text table: a row per revision (`by="revision"`) or repo, ages in days."""
    now = time.time()
    if by == "repo":
        rows = [["repo", "revisions", "files", "size", "accessed", "refs"]]
        rows += [[repo.repo_id, str(len(repo.revisions)), str(repo.nb_files), format_bytes(repo.size_on_disk),
                  _ago(now, repo.last_accessed), ",".join(sorted(repo.refs)) or "-"]
                 for repo in sorted(info.repos, key=lambda r: r.repo_id)]
        right = (1, 2, 3)
    elif by == "revision":
        rows = [["repo", "revision", "refs", "files", "size", "accessed", "modified"]]
        rows += [[repo.repo_id, rev.commit_hash[:8], ",".join(sorted(rev.refs)) or "-", str(rev.nb_files),
                  format_bytes(rev.size_on_disk),
                  _ago(now, max((f.blob_last_accessed for f in rev.files), default=rev.last_modified)),
                  _ago(now, rev.last_modified)] for repo, rev in revisions(info)]
        right = (3, 4)
    else:
        raise CacheTargetError(f"by={by!r} is not a table layout: use by='revision' or by='repo'.")
    footer = (f"{len(info.repos)} repo(s), {sum(len(r.revisions) for r in info.repos)} revision(s), "
              f"{format_bytes(info.size_on_disk)} on disk in {info.cache_dir}")
    if info.incomplete_size_on_disk:
        footer += f"\n{format_bytes(info.incomplete_size_on_disk)} in incomplete downloads (`hf cache prune`)"
    return "\n".join([text_table(rows, right=right), footer, *(f"warning: {w}" for w in info.warnings)])


def safe_delete_revisions(info: HFCacheInfo,
                          *targets: CachedRevisionInfo | str | os.PathLike[str]) -> DeleteCacheStrategy:
    """Given a scan and revisions, return `info.delete_revisions()`'s strategy minus every path outside the cache.
    `targets`: revisions of `info`, full commit hashes, or a repo or `snapshots/<hash>` folder. The library would
    `os.remove()` a file outside the cache that a snapshot links to (lesson 03)."""
    root = Path(info.cache_dir or ".").resolve()
    chosen = {(repo.repo_path, rev.commit_hash): (repo, rev)
              for target in targets for repo, rev in _named(info, target, root)}
    hashes = {rev.commit_hash for _, rev in chosen.values()}
    if len(hashes) < len(chosen):
        raise CacheTargetError("One commit hash is cached in several repos (a cache filled by an older course hub) and "
                               "the library deletes it from the first it meets: delete them one repo at a time.")
    repos = frozenset(repo for repo, _ in chosen.values())
    strategy = replace(info, repos=repos).delete_revisions(*sorted(hashes))
    for kind in ("repos", "snapshots", "refs"):
        for path in getattr(strategy, kind):
            if not _inside(_unfollowed(path), root):
                raise CacheSafetyError(f"Refusing to delete {path}: it is outside the Hugging Face cache {root} "
                                       f"({kind} of a deletion plan). Nothing was deleted.")
    unlinked = {f.blob_path: f.size_on_disk for repo in repos for rev in repo.revisions for f in rev.files
                if repo.repo_path in strategy.repos or f.blob_path in strategy.blobs
                or (rev.snapshot_path in strategy.snapshots and rev.snapshot_path in f.blob_path.parents)}
    kept = sum(size for path, size in unlinked.items() if not _inside(Path(os.path.realpath(path)), root))
    return replace(strategy, blobs=frozenset(p for p in strategy.blobs if _inside(_unfollowed(p), root)),
                   expected_freed_size=max(strategy.expected_freed_size - kept, 0))


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
    """Check, before downloading, that a model repo (minus its cached blobs) fits in the free space of the cache's disk
    (huggingface_hub only warns once a download has started); InsufficientDiskSpaceError unless `raise_error=False`."""
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
    """Hash each file of a cached revision and compare it with its blob's name (sha256 or git blob id), offline."""
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


def _named(info: HFCacheInfo, target: CachedRevisionInfo | str | os.PathLike[str],
           root: Path) -> list[tuple[CachedRepoInfo, CachedRevisionInfo]]:
    """The (repo, revision) pairs a target names; a folder outside the cache is refused."""
    pairs = [(repo, rev) for repo in info.repos for rev in repo.revisions]
    if isinstance(target, os.PathLike) or (isinstance(target, str) and os.sep in target):
        path = _unfollowed(Path(target).expanduser())
        if path == root:
            raise CacheSafetyError(f"Refusing to delete the whole cache folder {root}: name its revisions instead.")
        if not _inside(path, root):
            raise CacheSafetyError(f"{target} is outside the Hugging Face cache {root}: this helper only deletes "
                                   "inside it; remove other folders yourself.")
        found = [(repo, rev) for repo, rev in pairs if path in (repo.repo_path, rev.snapshot_path)]
    else:
        found = [(repo, rev) for repo, rev in pairs if target in (rev, rev.commit_hash)]
    if not found:
        raise CacheTargetError(f"{str(getattr(target, 'commit_hash', target))!r} names no cached revision in {root}: "
                               "see cache.table(scan_cache_dir()) or `hf cache ls --revisions`.")
    return found


def _unfollowed(path: Path) -> Path:
    """The absolute path with its parent folders resolved but its last part not followed (a link stays a link)."""
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def _inside(path: Path, root: Path) -> bool:
    """True when `path` lies strictly inside `root` (both absolute, `root` resolved)."""
    return path != root and os.path.commonpath([str(root), str(path)]) == str(root)


def _ago(now: float, timestamp: float) -> str:
    return f"{max(now - timestamp, 0.0) / DAY:.1f} d ago"
