"""A cache browser for live demos: list cached revisions, select, read the dry run, confirm the deletion. An
ipywidgets form, or its text where widgets cannot render (nbval); its methods do what its buttons do."""

from __future__ import annotations

import html
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from .cache import format_bytes, revisions, safe_delete_revisions
from .console import table
from .errors import CacheTargetError

if TYPE_CHECKING:
    from huggingface_hub import CachedRevisionInfo, DeleteCacheStrategy, HFCacheInfo


class CacheBrowser:
    """Browse a Hugging Face cache (default: `HF_HUB_CACHE`) and delete revisions after a dry run; `use_widgets`:
    the ipywidgets form (default: when installed)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *, use_widgets: bool | None = None) -> None:
        available = importlib.util.find_spec("ipywidgets") is not None
        if use_widgets and not available:
            raise CacheTargetError("use_widgets=True but ipywidgets is not installed: `pip install ipywidgets`, "
                                   "or use the text browser (use_widgets=False).")
        self.cache_dir, self.status, self._syncing, self._ui = cache_dir, "", False, None
        self.selected: tuple[CachedRevisionInfo, ...] = ()
        self.pending: DeleteCacheStrategy | None = None
        self.refresh()
        if available if use_widgets is None else use_widgets:
            self._ui = self._build()
            self._sync()

    def refresh(self) -> CacheBrowser:
        """Re-scan the cache (the "Refresh" button); keeps the selected revisions that are still there."""
        from huggingface_hub import scan_cache_dir
        self.info: HFCacheInfo = scan_cache_dir(self.cache_dir)
        chosen = {rev.snapshot_path for rev in self.selected}
        self.selected = tuple(rev for _, rev in revisions(self.info) if rev.snapshot_path in chosen)
        return self._sync()

    def select(self, *targets: str) -> CacheBrowser:
        """Select (tick) revisions: repo ids, `repo@hash`, or commit hashes of 7+ characters."""
        pairs = revisions(self.info)
        named = {t: [rev for repo, rev in pairs if _names(t, repo.repo_id, rev.commit_hash)] for t in targets}
        if unknown := [t for t, revs in named.items() if not revs]:
            raise CacheTargetError(f"{unknown[0]!r} names no repo or revision in the cache {self.info.cache_dir}: "
                                   "see cache.table(scan_cache_dir()) for what is there.")
        self.selected, self.pending = tuple(rev for _, rev in pairs if any(rev in r for r in named.values())), None
        return self._sync()

    def plan(self) -> DeleteCacheStrategy:
        """Plan deleting the selection (the "Delete selected..." button): `safe_delete_revisions`, a dry run."""
        if not self.selected:
            raise CacheTargetError("Nothing is selected: select revisions first (browser.select('repo@hash')).")
        self.pending, self.status = safe_delete_revisions(self.info, *self.selected), ""
        self._sync()
        return self.pending

    def confirm(self) -> int:
        """Execute the pending plan (the "Delete, free N" button), re-scan, and return the bytes freed."""
        if self.pending is None:
            raise CacheTargetError("No deletion is pending: select revisions and call plan() first, then confirm().")
        if not any(rev.snapshot_path.exists() for rev in self.selected):
            raise CacheTargetError("This plan's revisions are no longer in the cache (deleted meanwhile?): "
                                   "refresh() and select again.")
        before, planned, count = self.refresh().info.size_on_disk, self.pending.expected_freed_size, len(self.selected)
        self.pending.execute()
        self.pending, self.selected = None, ()
        freed = before - self.refresh().info.size_on_disk
        self.status = (f"Deleted {count} revision(s): freed {format_bytes(freed)} (planned {format_bytes(planned)}); "
                       f"{format_bytes(self.info.size_on_disk)} left in the cache.")
        self._sync()
        return freed

    def cancel(self) -> CacheBrowser:
        """Drop the pending plan (the "Cancel" button); nothing is deleted."""
        self.pending, self.status = None, "Cancelled: nothing was deleted."
        return self._sync()

    def text(self) -> str:
        """The browser as plain text: what nbval compares and what shows without widgets."""
        chosen = {rev.snapshot_path for rev in self.selected}
        rows = [["[x]" if rev.snapshot_path in chosen else "[ ]", repo.repo_id, rev.commit_hash[:8],
                 ",".join(sorted(rev.refs)) or "-", format_bytes(rev.size_on_disk)]
                for repo, rev in revisions(self.info)]
        lines = [f"Cache browser: {len(rows)} revision(s) of {len(self.info.repos)} repo(s), "
                 f"{format_bytes(self.info.size_on_disk)} on disk in {self.info.cache_dir}"]
        lines += ["  " + line for line in table(rows, right={4}).splitlines()]
        if self.pending is not None:
            lines += ["", self._dry_run()]
        elif self.selected:
            lines.append(f'{len(self.selected)} selected: browser.plan() (button "Delete selected...") '
                         "shows the dry run.")
        return "\n".join([*lines, self.status] if self.status else lines)

    __repr__ = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if self._ui is None:
            return {"text/plain": self.text()}
        bundle = self._ui["box"]._repr_mimebundle_(include=include, exclude=exclude)
        return (bundle[0] if isinstance(bundle, tuple) else bundle) | {"text/plain": self.text()}

    def _dry_run(self) -> str:
        freed = format_bytes(self.pending.expected_freed_size)
        lines = [f"Dry run: delete {len(self.selected)} revision(s), freeing {freed} (huggingface_hub's "
                 "DeleteCacheStrategy, minus any path outside the cache)."]
        if self.pending.repos:
            lines.append(f"  whole repo folders removed: {', '.join(sorted(p.name for p in self.pending.repos))}")
        return "\n".join([*lines, f'Confirm: browser.confirm() (button "Delete, free {freed}"), or browser.cancel().'])

    def _build(self) -> dict[str, Any]:
        import ipywidgets as w
        ui = {"header": w.HTML(), "list": w.SelectMultiple(options=[], rows=6, layout=w.Layout(width="100%")),
              "refresh": w.Button(description="Refresh", icon="refresh"),
              "delete": w.Button(description="Delete selected...", button_style="warning", icon="trash"),
              "plan": w.HTML(), "confirm": w.Button(description="Delete", button_style="danger"),
              "cancel": w.Button(description="Cancel"), "status": w.HTML()}
        ui["confirm_box"] = w.VBox([ui["plan"], w.HBox([ui["confirm"], ui["cancel"]])])
        ui["box"] = w.VBox([ui["header"], ui["list"], w.HBox([ui["delete"], ui["refresh"]]), ui["confirm_box"],
                            ui["status"]])
        ui["list"].observe(lambda change: self._syncing or self._guard(lambda: self.select(*change["new"])), "value")
        for name, action in (("refresh", self.refresh), ("delete", self.plan), ("confirm", self.confirm),
                             ("cancel", self.cancel)):
            ui[name].on_click(lambda _, action=action: self._guard(action))
        return ui

    def _guard(self, action: Any) -> None:
        """Run a button's action; show a course error in the status line instead of a traceback."""
        try:
            action()
        except CacheTargetError as exc:
            self.status = f"error: {exc}"
            self._sync()

    def _sync(self) -> CacheBrowser:
        """Make the widgets show the browser's state (ticked rows, the pending dry run, the status)."""
        if self._ui is None:
            return self
        ui, info, pending = self._ui, self.info, self.pending is not None
        self._syncing = True
        try:
            ui["header"].value = (f"<b>Hugging Face cache</b> <code>{html.escape(str(info.cache_dir))}</code>: "
                                  f"{len(info.repos)} repo(s), {format_bytes(info.size_on_disk)}")
            ui["list"].options = [(f"{repo.repo_id}  {rev.commit_hash[:8]}  [{','.join(sorted(rev.refs)) or '-'}]  "
                                   f"{format_bytes(rev.size_on_disk)}", f"{repo.repo_id}@{rev.commit_hash}")
                                  for repo, rev in revisions(info)]
            ui["list"].value = tuple(f"{repo.repo_id}@{rev.commit_hash}" for repo, rev in revisions(info)
                                     if rev.snapshot_path in {s.snapshot_path for s in self.selected})
            ui["delete"].disabled = not self.selected
            ui["confirm_box"].layout.display = "flex" if pending else "none"
            ui["plan"].value = f"<pre>{html.escape(self._dry_run())}</pre>" if pending else ""
            ui["confirm"].description = (f"Delete, free {format_bytes(self.pending.expected_freed_size)}"
                                         if pending else "Delete")
            ui["status"].value = html.escape(self.status)
        finally:
            self._syncing = False
        return self


def _names(target: str, repo_id: str, commit: str) -> bool:
    """True when `target` (a repo id, `repo@hash`, or a hash of 7+ characters) names this revision."""
    repo, _, rev = target.partition("@")
    if rev:
        return repo == repo_id and len(rev) >= 7 and commit.startswith(rev)
    return target == repo_id or (len(target) >= 7 and commit.startswith(target))
