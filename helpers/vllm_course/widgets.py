"""A cache browser for live demos: list cached revisions, select, plan a deletion, confirm it.

With ipywidgets it is a small form (a multi-select list, "Delete selected..." which shows the dry
run, then "Delete, free N" / "Cancel"); every button calls `vllm_course.cache` (`plan_for`, then
`DeletePlan.execute`). Its plain-text form is what nbval compares and what shows where widgets
cannot render. The methods `select()`, `plan()`, `confirm()`, `cancel()` do what the buttons do, so
a notebook (or a test) can drive it without clicking.

Example:
    >>> from vllm_course.widgets import CacheBrowser                    # doctest: +SKIP
    >>> browser = CacheBrowser()
    >>> browser                                 # the widget in JupyterLab, text elsewhere
    >>> browser.select("course/tiny@ea101223").plan()
    >>> browser.confirm().freed_bytes
    216
"""

from __future__ import annotations

import html
import importlib.util
import os
from typing import Any

from . import cache
from .cache_scan import CacheScan, RevisionRow
from .errors import CacheTargetError


def widgets_available() -> bool:
    """True when ipywidgets can be imported."""
    return importlib.util.find_spec("ipywidgets") is not None


class CacheBrowser:
    """Browse the Hugging Face cache and delete revisions with a confirmation step.

    Args:
        cache_dir: cache folder (default: this process's `HF_HUB_CACHE`).
        use_widgets: build the ipywidgets form (default: when ipywidgets is installed); False gives
            the text-only browser.

    Raises:
        CacheTargetError: `use_widgets=True` without ipywidgets, or a `cache_dir` that is not a folder.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *, use_widgets: bool | None = None) -> None:
        if use_widgets and not widgets_available():
            raise CacheTargetError("use_widgets=True but ipywidgets is not installed: `pip install ipywidgets`, "
                                   "or use the text browser (use_widgets=False).")
        self.cache_dir = cache_dir
        self.scan_result: CacheScan = cache.scan(cache_dir)
        self.selected: tuple[RevisionRow, ...] = ()
        self.pending: cache.DeletePlan | None = None
        self.status = ""
        self._syncing = False
        self._ui: dict[str, Any] | None = None
        if use_widgets is None:
            use_widgets = widgets_available()
        if use_widgets:
            self._ui = self._build()
            self._sync()

    # -- what the buttons do -------------------------------------------------------------------

    def refresh(self) -> CacheBrowser:
        """Re-scan the cache (the "Refresh" button); drops a selection whose revisions are gone."""
        self.scan_result = cache.scan(self.cache_dir)
        self.selected = tuple(r for r in self.scan_result.revisions if r.target in {s.target for s in self.selected})
        self._sync()
        return self

    def select(self, *targets: str | os.PathLike[str] | RevisionRow) -> CacheBrowser:
        """Select revisions (ticking them in the list): `repo@hash`, hash prefixes, repo ids or rows.

        Raises:
            CacheTargetError: a target that names nothing in the cache.
        """
        self.selected = cache.find_revisions(self.scan_result, *targets)
        self.pending = None
        self._sync()
        return self

    def plan(self) -> cache.DeletePlan:
        """Plan deleting the selection (the "Delete selected..." button): the dry run to confirm.

        Raises:
            CacheTargetError: nothing is selected.
        """
        if not self.selected:
            raise CacheTargetError("Nothing is selected: select revisions first (browser.select('repo@hash')).")
        self.pending = cache.plan_for(self.selected, reason="selected in the cache browser",
                                      scan_result=self.scan_result)
        self.status = ""
        self._sync()
        return self.pending

    def confirm(self) -> cache.DeleteResult:
        """Execute the pending plan (the "Delete, free N" button) and re-scan.

        Raises:
            CacheTargetError: no plan is pending (call `plan()` first).
        """
        if self.pending is None:
            raise CacheTargetError("No deletion is pending: select revisions and call plan() first, then confirm().")
        result = self.pending.execute()
        self.pending, self.selected, self.status = None, (), str(result)
        self.refresh()
        return result

    def cancel(self) -> CacheBrowser:
        """Drop the pending plan (the "Cancel" button); nothing is deleted."""
        self.pending, self.status = None, "Cancelled: nothing was deleted."
        self._sync()
        return self

    # -- views ---------------------------------------------------------------------------------

    def text(self) -> str:
        """The browser as plain text: what nbval compares and what shows without widgets."""
        found = self.scan_result
        chosen = {r.target for r in self.selected}
        rows = [[("[x]" if r.target in chosen else "[ ]"), r.repo_id, r.short_hash, r.refs_str, r.size_str]
                for r in found.revisions]
        widths = [max(len(row[i]) for row in rows) for i in range(5)] if rows else []
        lines = [f"Cache browser: {len(found.revisions)} revision(s) of {len(found.repos)} repo(s), "
                 f"{found.size_str} on disk in {found.cache_dir}"]
        lines += ["  " + "  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                  for row in rows]
        if self.pending is not None:
            lines += ["", str(self.pending),
                      f'Confirm: browser.confirm() (button "Delete, free {self.pending.expected_freed_str}"), '
                      "or browser.cancel()."]
        elif self.selected:
            lines.append(f'{len(self.selected)} selected: browser.plan() (button "Delete selected...") shows the dry run.')
        if self.status:
            lines.append(self.status)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if self._ui is None:
            return {"text/plain": self.text()}
        bundle = self._ui["box"]._repr_mimebundle_(include=include, exclude=exclude)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = self.text()
        return data

    @property
    def widget(self) -> Any:
        """The ipywidgets box (None in the text-only browser)."""
        return self._ui["box"] if self._ui else None

    # -- ipywidgets plumbing -------------------------------------------------------------------

    def _build(self) -> dict[str, Any]:
        import ipywidgets as w

        ui: dict[str, Any] = {
            "header": w.HTML(),
            "list": w.SelectMultiple(options=[], rows=6, layout=w.Layout(width="100%")),
            "refresh": w.Button(description="Refresh", icon="refresh"),
            "delete": w.Button(description="Delete selected...", button_style="warning", icon="trash"),
            "plan": w.HTML(),
            "confirm": w.Button(description="Delete", button_style="danger"),
            "cancel": w.Button(description="Cancel"),
            "status": w.HTML(),
        }
        ui["confirm_box"] = w.VBox([ui["plan"], w.HBox([ui["confirm"], ui["cancel"]])])
        ui["box"] = w.VBox([ui["header"], ui["list"], w.HBox([ui["delete"], ui["refresh"]]), ui["confirm_box"],
                            ui["status"]])
        ui["list"].observe(self._on_select, names="value")
        ui["refresh"].on_click(lambda _: self._guard(self.refresh))
        ui["delete"].on_click(lambda _: self._guard(self.plan))
        ui["confirm"].on_click(lambda _: self._guard(self.confirm))
        ui["cancel"].on_click(lambda _: self._guard(self.cancel))
        return ui

    def _guard(self, action: Any) -> None:
        """Run a button's action; show a course error in the status line instead of a traceback."""
        try:
            action()
        except CacheTargetError as exc:
            self.status = f"error: {exc}"
            self._sync()

    def _on_select(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        wanted = set(change["new"])
        self.selected = tuple(r for r in self.scan_result.revisions if r.target in wanted)
        self.pending = None
        self._sync()

    def _sync(self) -> None:
        """Make the widgets show the browser's state."""
        if self._ui is None:
            return
        ui, found = self._ui, self.scan_result
        self._syncing = True
        try:
            ui["header"].value = (f"<b>Hugging Face cache</b> <code>{html.escape(str(found.cache_dir))}</code>: "
                                  f"{len(found.repos)} repo(s), {len(found.revisions)} revision(s), {found.size_str}")
            ui["list"].options = [(f"{r.repo_id}  {r.short_hash}  [{r.refs_str}]  {r.size_str}", r.target)
                                  for r in found.revisions]
            ui["list"].value = tuple(r.target for r in self.selected)
            ui["delete"].disabled = not self.selected
            pending = self.pending is not None
            ui["confirm_box"].layout.display = "flex" if pending else "none"
            ui["plan"].value = f"<pre>{html.escape(str(self.pending))}</pre>" if pending else ""
            ui["confirm"].description = f"Delete, free {self.pending.expected_freed_str}" if pending else "Delete"
            ui["status"].value = html.escape(self.status)
        finally:
            self._syncing = False
