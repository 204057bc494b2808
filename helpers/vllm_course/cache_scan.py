"""Scan the Hugging Face cache into table rows (huggingface_hub's `scan_cache_dir()` underneath).

Rows are frozen dataclasses with raw fields (bytes, timestamps) and display properties; a
`CacheScan` prints as a plain-text table and shows as HTML in Jupyter. `vllm_course.cache` is the
public face of this module, `cache_clean` and `cache_checks`.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CacheTargetError

if TYPE_CHECKING:  # huggingface_hub is imported lazily: it reads HF_HOME/HF_ENDPOINT at import
    from huggingface_hub import CachedRepoInfo, CachedRevisionInfo, HFCacheInfo

DAY = 86_400.0


def format_bytes(num: int | float) -> str:
    """Given a byte count, return it with a decimal unit: `format_bytes(269060552) == '269.1 MB'`."""
    if abs(num) < 1000:
        return f"{int(num)} B"
    value = float(num)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if abs(round(value, 1)) < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def hub_cache_dir() -> Path:
    """The cache folder this process's huggingface_hub uses (`HF_HUB_CACHE`, read when it was imported)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


@dataclass(frozen=True)
class RevisionRow:
    """One cached revision (a `snapshots/<commit>` folder) as a table row.

    `last_accessed` is the newest access time of the revision's own blobs: the library does not
    define it per revision because blobs are shared, and filesystems mounted `noatime` or
    `relatime` update it lazily (at most once a day).
    """

    repo_id: str
    repo_type: str
    commit_hash: str
    refs: tuple[str, ...]
    nb_files: int
    size_on_disk: int
    last_accessed: float
    last_modified: float
    snapshot_path: Path

    @property
    def short_hash(self) -> str:
        return self.commit_hash[:8]

    @property
    def detached(self) -> bool:
        """True when no ref (branch or tag) points at this revision: `hf cache prune` removes those."""
        return not self.refs

    @property
    def refs_str(self) -> str:
        return ",".join(self.refs) or "-"

    @property
    def size_str(self) -> str:
        return format_bytes(self.size_on_disk)

    @property
    def target(self) -> str:
        """The unambiguous `repo@commit` form `plan_delete()` accepts."""
        return f"{self.repo_id}@{self.commit_hash}"

    def idle_days(self, now: float | None = None) -> float:
        """Days since any blob of this revision was last read."""
        return ((time.time() if now is None else now) - self.last_accessed) / DAY


@dataclass(frozen=True)
class RepoRow:
    """One cached repo (`models--org--name`): totals over its revisions."""

    repo_id: str
    repo_type: str
    nb_revisions: int
    nb_files: int
    size_on_disk: int
    last_accessed: float
    last_modified: float
    refs: tuple[str, ...]
    repo_path: Path

    @property
    def size_str(self) -> str:
        return format_bytes(self.size_on_disk)


@dataclass(frozen=True)
class CacheScan:
    """What `scan()` found: repo and revision rows, physical size, and the library's warnings."""

    cache_dir: Path
    repos: tuple[RepoRow, ...]
    revisions: tuple[RevisionRow, ...]
    size_on_disk: int
    incomplete_bytes: int
    warnings: tuple[str, ...]
    scanned_at: float
    info: HFCacheInfo | None = field(default=None, repr=False, compare=False)

    @property
    def size_str(self) -> str:
        return format_bytes(self.size_on_disk)

    def revisions_of(self, repo_id: str) -> tuple[RevisionRow, ...]:
        """The cached revisions of one repo, newest first (empty when it is not cached)."""
        return tuple(r for r in self.revisions if r.repo_id == repo_id)

    def table(self, by: str = "revision") -> str:
        """A plain-text table, one row per revision (`by="revision"`) or per repo (`by="repo"`)."""
        header, rows = self._rows(by)
        return _text_table(header, rows) + "\n" + self._footer()

    def _rows(self, by: str) -> tuple[list[str], list[list[str]]]:
        now = self.scanned_at
        if by == "repo":
            header = ["repo", "revisions", "files", "size", "accessed", "refs"]
            return header, [[r.repo_id, str(r.nb_revisions), str(r.nb_files), r.size_str,
                             _ago(now, r.last_accessed), ",".join(r.refs) or "-"] for r in self.repos]
        if by != "revision":
            raise CacheTargetError(f"by={by!r} is not a table layout: use by='revision' or by='repo'.")
        header = ["repo", "revision", "refs", "files", "size", "accessed", "modified"]
        return header, [[r.repo_id, r.short_hash, r.refs_str, str(r.nb_files), r.size_str,
                         _ago(now, r.last_accessed), _ago(now, r.last_modified)] for r in self.revisions]

    def _footer(self) -> str:
        text = (f"{len(self.repos)} repo(s), {len(self.revisions)} revision(s), {self.size_str} on disk "
                f"in {self.cache_dir}")
        if self.incomplete_bytes:
            text += f"\n{format_bytes(self.incomplete_bytes)} in incomplete downloads (`hf cache prune` removes them)"
        return text + "".join(f"\nwarning: {w}" for w in self.warnings)

    def __str__(self) -> str:
        return self.table()

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # noqa: ANN001 - IPython's printer
        printer.text(self.table())

    def _repr_html_(self) -> str:
        header, rows = self._rows("revision")
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        foot = html.escape(self._footer()).replace("\n", "<br>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>{foot}</p>"


def scan(cache_dir: str | os.PathLike[str] | None = None) -> CacheScan:
    """Scan the Hugging Face cache with `huggingface_hub.scan_cache_dir()` and return table rows.

    Args:
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`). A default cache that does
            not exist yet (nothing downloaded) scans as empty.

    Returns:
        A `CacheScan`: repos sorted by id, revisions by repo then newest first; `print()` it for a
        table, or let Jupyter show it as HTML.

    Raises:
        CacheTargetError: an explicit `cache_dir` that does not exist or is a file.

    Example:
        >>> cache.scan().revisions[0].target                            # doctest: +SKIP
        'course/SmolLM2-135M-Instruct@5f0a51e2...'
    """
    from huggingface_hub import scan_cache_dir

    folder = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    if not folder.exists() and cache_dir is None:
        return CacheScan(folder.resolve(), (), (), 0, 0, (), time.time())
    if not folder.is_dir():
        raise CacheTargetError(f"cache_dir={str(folder)!r} is not a folder: pass the hub cache "
                               "(HF_HOME/hub, or HF_HUB_CACHE), or omit it for this process's cache.")
    info = scan_cache_dir(folder)
    repos, revisions = [], []
    for repo in sorted(info.repos, key=lambda r: (r.repo_id, r.repo_type)):
        rows = sorted((_revision_row(repo, rev) for rev in repo.revisions), key=_newest_first)
        revisions.extend(rows)
        refs = tuple(sorted(ref for rev in repo.revisions for ref in rev.refs))
        repos.append(RepoRow(repo.repo_id, repo.repo_type, len(repo.revisions), repo.nb_files, repo.size_on_disk,
                             repo.last_accessed, repo.last_modified, refs, repo.repo_path))
    return CacheScan(Path(info.cache_dir or folder), tuple(repos), tuple(revisions), info.size_on_disk,
                     info.incomplete_size_on_disk, tuple(str(w) for w in info.warnings), time.time(), info)


# -- private helpers -----------------------------------------------------------------------------


def _revision_row(repo: CachedRepoInfo, rev: CachedRevisionInfo) -> RevisionRow:
    accessed = max((f.blob_last_accessed for f in rev.files), default=rev.last_modified)
    return RevisionRow(repo.repo_id, repo.repo_type, rev.commit_hash, tuple(sorted(rev.refs)), rev.nb_files,
                       rev.size_on_disk, accessed, rev.last_modified, rev.snapshot_path)


def _newest_first(row: RevisionRow) -> tuple[float, float]:
    try:
        folder_mtime = row.snapshot_path.stat().st_mtime
    except OSError:
        folder_mtime = 0.0
    return (-row.last_modified, -folder_mtime)


def _ago(now: float, timestamp: float) -> str:
    return f"{max(now - timestamp, 0.0) / DAY:.1f} d ago"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    numeric = {"files", "size", "revisions"}
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if h in numeric else c.ljust(w)
                         for c, w, h in zip(cells, widths, header)).rstrip()

    return "\n".join([line(header)] + [line(row) for row in rows])
