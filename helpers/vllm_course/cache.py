"""The Hugging Face cache: what huggingface_hub's scanner and delete strategy lack. `table()` (ages in days) and
`safe_delete_revisions()` (nothing outside the cache)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .console import table as text_table
from .errors import CacheSafetyError, CacheTargetError

if TYPE_CHECKING:  # huggingface_hub reads HF_HOME / HF_ENDPOINT when imported: import it late
    from huggingface_hub import CachedRepoInfo, CachedRevisionInfo, DeleteCacheStrategy, HFCacheInfo

DAY = 86_400.0


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
