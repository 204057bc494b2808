"""Plan, check and run deletions in the Hugging Face cache with huggingface_hub's own strategy.

A `DeletePlan` wraps `HFCacheInfo.delete_revisions()`: printing it is the dry run (the bytes it
would free); `.execute()` runs the library's `DeleteCacheStrategy`. Every path is checked first:
nothing outside the cache is deleted, and a symlink that points out of the cache is removed as a
link, never followed (its target is listed in `DeletePlan.kept_outside`). Cleaning policies:
`plan_keep_latest`, `plan_not_accessed`, `plan_detached`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .cache_scan import CacheScan, RevisionRow, format_bytes, scan
from .errors import CacheSafetyError, CacheTargetError

if TYPE_CHECKING:
    from huggingface_hub import DeleteCacheStrategy, HFCacheInfo

_HEX = re.compile(r"^[0-9a-f]{7,40}$")
_REPO_TYPES = ("model", "dataset", "space", "kernel")


@dataclass(frozen=True)
class DeleteResult:
    """What `DeletePlan.execute()` did: bytes freed and left, measured by scanning before and after.

    Measured bytes are those of the distinct blobs inside the cache (targets outside it do not count).
    """

    plan: DeletePlan
    freed_bytes: int
    remaining_bytes: int

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # noqa: ANN001 - IPython's printer
        printer.text(str(self))

    def __str__(self) -> str:
        return (f"Deleted {len(self.plan.revisions)} revision(s): freed {format_bytes(self.freed_bytes)} "
                f"(planned {format_bytes(self.plan.expected_freed_size)}); "
                f"{format_bytes(self.remaining_bytes)} left in the cache.")


@dataclass(frozen=True)
class DeletePlan:
    """A checked deletion: the revisions, the library's strategy, and the bytes it would free.

    Printing it is the dry run; nothing is deleted until `execute()`.
    """

    cache_dir: Path
    reason: str
    revisions: tuple[RevisionRow, ...]
    expected_freed_size: int
    kept_outside: tuple[Path, ...]
    strategy: DeleteCacheStrategy | None = field(default=None, repr=False, compare=False)

    @property
    def expected_freed_str(self) -> str:
        return format_bytes(self.expected_freed_size)

    @property
    def repo_ids(self) -> tuple[str, ...]:
        return tuple(sorted({r.repo_id for r in self.revisions}))

    @property
    def whole_repos(self) -> tuple[Path, ...]:
        """Repo folders deleted entirely (every cached revision of them is in the plan)."""
        return tuple(sorted(self.strategy.repos)) if self.strategy else ()

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # noqa: ANN001 - IPython's printer
        printer.text(str(self))

    def __str__(self) -> str:
        if not self.revisions:
            return f"Dry run ({self.reason}): nothing to delete."
        lines = [f"Dry run ({self.reason}): delete {len(self.revisions)} revision(s) of "
                 f"{len(self.repo_ids)} repo(s), freeing {self.expected_freed_str}."]
        for row in self.revisions:
            lines.append(f"  {row.repo_id}  {row.short_hash}  refs {row.refs_str}  {row.nb_files} files  "
                         f"{row.size_str}")
        if self.whole_repos:
            lines.append(f"  whole repo folders removed: {', '.join(p.name for p in self.whole_repos)}")
        lines += [f"  kept (symlink target outside the cache): {p}" for p in self.kept_outside]
        return "\n".join(lines + ["Nothing is deleted until .execute()."])

    def execute(self) -> DeleteResult:
        """Run the library's `DeleteCacheStrategy` after checking every path again.

        Returns:
            A `DeleteResult` with the bytes really freed (cache size before minus after).

        Raises:
            CacheSafetyError: a path of the strategy lies outside the cache (never after `_checked`).
            CacheTargetError: the plan was already executed, or its revisions are gone: plan again.
        """
        from huggingface_hub import scan_cache_dir

        if self.strategy is None or not self.revisions:
            size = _blob_bytes(scan_cache_dir(self.cache_dir), self.cache_dir) if self.cache_dir.is_dir() else 0
            return DeleteResult(self, 0, size)
        _check_paths(self.strategy, self.cache_dir)
        if not any(r.snapshot_path.exists() for r in self.revisions):
            raise CacheTargetError("This plan's revisions are no longer in the cache (already executed?): "
                                   "make a new plan from a fresh scan.")
        before = _blob_bytes(scan_cache_dir(self.cache_dir), self.cache_dir)
        self.strategy.execute()
        after = _blob_bytes(scan_cache_dir(self.cache_dir), self.cache_dir)
        return DeleteResult(self, before - after, after)


def plan_delete(*targets: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> DeletePlan:
    """Plan the deletion of cached repos or revisions (a dry run until `.execute()`).

    Args:
        *targets: repo ids (`org/name`, `model/org/name`), revision hashes or unique prefixes (7+
            characters), `repo@hash` when a hash is cached under several repos, or folders inside
            the cache (a repo folder or a `snapshots/<hash>` folder).
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`).

    Returns:
        A `DeletePlan` built with `HFCacheInfo.delete_revisions()`.

    Raises:
        CacheSafetyError: a target path outside the cache (or the cache folder itself).
        CacheTargetError: no target, or one that names nothing in the cache.

    Example:
        >>> print(cache.plan_delete("ea101223"))                          # doctest: +SKIP
        Dry run (asked for ea101223): delete 1 revision(s) of 1 repo(s), freeing 216 B.
    """
    if not targets:
        raise CacheTargetError("plan_delete() needs at least one repo id, revision hash or cache folder.")
    found = scan(cache_dir)
    rows = find_revisions(found, *targets)
    return plan_for(rows, reason="asked for " + ", ".join(_label(t) for t in targets), scan_result=found)


def find_revisions(found: CacheScan, *targets: str | os.PathLike[str] | RevisionRow) -> tuple[RevisionRow, ...]:
    """Given a scan and targets (the forms `plan_delete` accepts, or rows), return the rows they name.

    Raises:
        CacheSafetyError: a target path outside the cache.
        CacheTargetError: a target that names nothing in the scan.
    """
    rows: dict[str, RevisionRow] = {}
    for target in targets:
        for row in [target] if isinstance(target, RevisionRow) else _resolve(found, target):
            rows[row.target] = row
    return tuple(rows.values())


def plan_keep_latest(n: int = 1, *, keep_refs: bool = True, repo_id: str | None = None,
                     cache_dir: str | os.PathLike[str] | None = None) -> DeletePlan:
    """Plan deleting every revision but the newest `n` of each repo (by last modification).

    Args:
        n: revisions to keep per repo (1 or more; to drop whole repos use `plan_delete`).
        keep_refs: never select a revision a ref (e.g. `main`) points at.
        repo_id: only this repo (default: every cached repo).
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`).

    Raises:
        CacheTargetError: `n` below 1, or `repo_id` not cached.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise CacheTargetError(f"n={n!r}: keep at least 1 revision per repo; to drop whole repos use plan_delete(repo_id).")
    found = scan(cache_dir)
    ids = [repo_id] if repo_id else [r.repo_id for r in found.repos]
    if repo_id and not found.revisions_of(repo_id):
        raise CacheTargetError(f"{repo_id} is not in the cache {found.cache_dir}: see cache.scan() for what is there.")
    chosen = [row for rid in ids for row in found.revisions_of(rid)[n:] if not (keep_refs and row.refs)]
    return plan_for(chosen, reason=f"keep the newest {n} revision(s) per repo", scan_result=found)


def plan_not_accessed(days: float, *, now: float | None = None,
                      cache_dir: str | os.PathLike[str] | None = None) -> DeletePlan:
    """Plan deleting revisions none of whose blobs was read in the last `days` days.

    When every revision of a repo qualifies, the library removes the whole repo folder.

    Args:
        days: idle time, in days (> 0). `hf cache ls --filter "accessed>30d"` is the CLI's view.
        now: the time to measure from (default: now); tests and demos pass it.
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`).

    Raises:
        CacheTargetError: `days` not a positive number.
    """
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days <= 0:
        raise CacheTargetError(f"days={days!r}: pass a positive number of days, e.g. plan_not_accessed(30).")
    found = scan(cache_dir)
    now = found.scanned_at if now is None else now
    chosen = [row for row in found.revisions if row.idle_days(now) > days]
    return plan_for(chosen, reason=f"not accessed for {days:g} day(s)", scan_result=found)


def plan_detached(*, cache_dir: str | os.PathLike[str] | None = None) -> DeletePlan:
    """Plan deleting revisions no ref points at (what `hf cache prune` removes, minus `.incomplete` files)."""
    found = scan(cache_dir)
    return plan_for([r for r in found.revisions if r.detached], reason="detached revisions (no ref)",
                    scan_result=found)


def plan_for(rows: Iterable[RevisionRow], *, reason: str, scan_result: CacheScan | None = None) -> DeletePlan:
    """Given revision rows of one scan, return a checked `DeletePlan` for them.

    One `delete_revisions()` call over the rows' repos only (the library takes a hash from the first
    repo it meets that holds it: commit hashes are unique per repo on the Hub and the course hub, but
    a cache filled by an older course hub may hold one hash in two repos). Blob paths outside the
    cache are dropped from the strategy and their bytes from the estimate.

    Raises:
        CacheTargetError: rows not from this scan, or two of them with one hash in different repos.
        CacheSafetyError: the library planned to remove a repo, snapshot or ref outside the cache.
    """
    found = scan_result or scan()
    chosen = sorted({row.target: row for row in rows}.values(), key=lambda r: (r.repo_id, r.commit_hash))
    if not chosen or found.info is None:
        return DeletePlan(found.cache_dir, reason, (), 0, (), None)
    for row in chosen:
        if row not in found.revisions:
            raise CacheTargetError(f"{row.target} is not in this scan of {found.cache_dir} (an older scan?): "
                                   "pass rows from the same scan_result.")
    hashes = {row.commit_hash for row in chosen}
    if len(hashes) < len(chosen):
        raise CacheTargetError("Some of these revisions share a commit hash across repos (a cache filled by an "
                               "older course hub): plan them one repo at a time (repo@hash).")
    repos = {(row.repo_type, row.repo_id) for row in chosen}
    only = replace(found.info, repos=frozenset(r for r in found.info.repos if (r.repo_type, r.repo_id) in repos))
    strategy, freed, outside = _inside_only(only, only.delete_revisions(*sorted(hashes)), found.cache_dir)
    return DeletePlan(found.cache_dir, reason, tuple(chosen), freed, outside, strategy)


# -- private helpers -----------------------------------------------------------------------------


def _label(target: str | os.PathLike[str]) -> str:
    text = str(target)
    return text[:8] if _HEX.match(text) else text


def _resolve(found: CacheScan, target: str | os.PathLike[str]) -> list[RevisionRow]:
    """Given a target, return the revision rows it names (see `plan_delete`)."""
    text = os.fspath(target)
    if isinstance(target, os.PathLike) or text.startswith(("/", "~", ".")):
        return _resolve_path(found, Path(text).expanduser())
    repo_part, _, rev_part = text.partition("@")
    if repo_part.startswith(tuple(f"{t}s--" for t in _REPO_TYPES)):  # a cache folder name
        repo_part = repo_part.split("--", 1)[1].replace("--", "/")
    if _HEX.match(repo_part) and not rev_part:
        matches = [r for r in found.revisions if r.commit_hash.startswith(repo_part)]
        repos = sorted({r.repo_id for r in matches})
        if len(repos) > 1:
            raise CacheTargetError(f"{text} matches revisions of {len(repos)} repos ({', '.join(repos)}): "
                                   f"write repo@hash, e.g. {repos[0]}@{text}.")
        if len({r.commit_hash for r in matches}) > 1:
            raise CacheTargetError(f"{text} is the prefix of several revisions: give more characters.")
        if matches:
            return matches
    parts = repo_part.split("/")
    if len(parts) == 3 and parts[0] in _REPO_TYPES:
        repo_part = "/".join(parts[1:])
    rows = [r for r in found.revisions_of(repo_part) if not rev_part or r.commit_hash.startswith(rev_part)]
    if rows and (not rev_part or len({r.commit_hash for r in rows}) == 1):
        return rows
    raise CacheTargetError(f"{text!r} names no repo or revision in the cache {found.cache_dir}: "
                           "see cache.scan() (or `hf cache ls --revisions`) for what is there.")


def _resolve_path(found: CacheScan, path: Path) -> list[RevisionRow]:
    root = found.cache_dir.resolve()
    where = _unfollowed(path)
    if where == root:
        raise CacheSafetyError(f"Refusing to delete the whole cache folder {root}: name its repos or revisions "
                               "instead (see cache.scan()).")
    if not _inside(where, root):
        raise CacheSafetyError(f"{path} is outside the Hugging Face cache {root}: this helper only deletes "
                               "inside it; remove other folders yourself.")
    rel = where.relative_to(root).parts
    rows = [r for r in found.revisions if r.snapshot_path.parent.parent.name == rel[0]]
    if len(rel) == 1 and rows:
        return rows
    if len(rel) == 3 and rel[1] == "snapshots":
        rows = [r for r in rows if r.commit_hash == rel[2]]
        if rows:
            return rows
    raise CacheTargetError(f"{path} is not a cached repo folder or a snapshots/<hash> folder: name a repo, "
                           "a revision, or one of those folders (see cache.scan()).")


def _blob_bytes(info: HFCacheInfo, cache_dir: Path) -> int:
    """Bytes of the distinct blob files inside the cache that the scanned revisions link to."""
    root = cache_dir.resolve()
    real = {os.path.realpath(f.blob_path) for repo in info.repos for rev in repo.revisions for f in rev.files}
    return sum(os.stat(p).st_size for p in real if _inside(Path(p), root) and os.path.isfile(p))


def _unfollowed(path: Path) -> Path:
    """The absolute path with its parent folders resolved but its last part not followed."""
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def _inside(path: Path, root: Path) -> bool:
    """True when `path` lies strictly inside `root` (both absolute, `root` resolved)."""
    return path != root and os.path.commonpath([str(root), str(path)]) == str(root)


def _inside_only(info: HFCacheInfo, strategy: DeleteCacheStrategy,
                 cache_dir: Path) -> tuple[DeleteCacheStrategy, int, tuple[Path, ...]]:
    """Drop blobs outside the cache from the strategy, and the bytes they hold from its estimate."""
    root = cache_dir.resolve()
    counted = {f.blob_path: f.size_on_disk for repo in info.repos for rev in repo.revisions for f in rev.files
               if repo.repo_path in strategy.repos
               or (rev.snapshot_path in strategy.snapshots
                   and (f.blob_path in strategy.blobs or rev.snapshot_path in f.blob_path.parents))}
    outside = {p: s for p, s in counted.items() if not _inside(Path(os.path.realpath(p)), root)}
    freed = max(strategy.expected_freed_size - sum(outside.values()), 0)
    blobs = frozenset(p for p in strategy.blobs if _inside(_unfollowed(p), root))
    checked = replace(strategy, blobs=blobs, expected_freed_size=freed, cache_dir=root)
    _check_paths(checked, root)
    return checked, freed, tuple(sorted({Path(os.path.realpath(p)) for p in outside}))


def _check_paths(strategy: DeleteCacheStrategy, cache_dir: Path) -> None:
    """Raise unless every path the strategy removes lies inside the cache (links are not followed)."""
    root = cache_dir.resolve()
    for kind in ("repos", "snapshots", "refs", "files", "blobs"):
        for path in getattr(strategy, kind):
            if not _inside(_unfollowed(path), root):
                raise CacheSafetyError(f"Refusing to delete {path}: it is outside the Hugging Face cache {root} "
                                       f"({kind} of a deletion plan). Nothing was deleted.")
