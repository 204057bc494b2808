"""Read the cache: `scan_cache_dir()`'s own objects as stable text tables."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..console import table as text_table
from ..errors import CacheTargetError

if TYPE_CHECKING:  # huggingface_hub reads HF_HOME / HF_ENDPOINT when imported: import it late
    from huggingface_hub import CachedRepoInfo, CachedRevisionInfo, HFCacheInfo

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
    """Given a `scan_cache_dir()` result, return a text table: a row per revision (`by="revision"`) or repo.

    Ages are in days ("0.0 d ago"), not `hf cache ls`'s "a few seconds ago", so a lesson prints the
    same table every run. `accessed` of a revision is the newest access time of its own blobs.
    """
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


def _ago(now: float, timestamp: float) -> str:
    return f"{max(now - timestamp, 0.0) / DAY:.1f} d ago"
