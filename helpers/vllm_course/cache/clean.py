"""Delete from the cache with huggingface_hub's own strategy, and nothing outside the cache.

`HFCacheInfo.delete_revisions()` plans a deletion: a `DeleteCacheStrategy`, a dry run until its
`.execute()`. It takes a snapshot symlink's target as the file's blob, so a link to a file outside
the cache (a notes file, an adapter kept elsewhere) would be `os.remove()`d (lesson 03 shows it).
The cleaning policies are comprehensions in lessons 03 and 08; this is the safety they share.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CacheSafetyError, CacheTargetError

if TYPE_CHECKING:
    from huggingface_hub import CachedRepoInfo, CachedRevisionInfo, DeleteCacheStrategy, HFCacheInfo

def safe_delete_revisions(info: HFCacheInfo,
                          *targets: CachedRevisionInfo | str | os.PathLike[str]) -> DeleteCacheStrategy:
    """Given a scan and revisions, return `info.delete_revisions()`'s strategy minus every path outside the cache.

    Nothing is deleted until you call `.execute()` on the result. A blob that lies outside the cache
    is dropped from the strategy and its bytes from `expected_freed_size`: the snapshot's link is
    removed with the snapshot, its target is kept.

    Args:
        info: a `scan_cache_dir()` result; its `cache_dir` is the folder nothing may be deleted outside of.
        *targets: `CachedRevisionInfo`s of `info`, full commit hashes, or folders inside the cache (a
            repo folder, or its `snapshots/<hash>` folder).

    Returns:
        huggingface_hub's `DeleteCacheStrategy` (`expected_freed_size_str`, `.execute()`); an empty one
        (0 bytes) when no target is given, as a policy that selects nothing gives none.

    Raises:
        CacheSafetyError: a folder outside the cache (or the cache itself), or a planned path outside it.
        CacheTargetError: a target that names no cached revision, or one hash in two repos.

    Example:
        >>> info = scan_cache_dir()                                         # doctest: +SKIP
        >>> detached = [rev for repo in info.repos for rev in repo.revisions if not rev.refs]
        >>> cache.safe_delete_revisions(info, *detached).expected_freed_size_str
        '237.0'
    """
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
