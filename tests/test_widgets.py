"""The cache browser (text and ipywidgets) and the plot helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from huggingface_hub import DeleteCacheStrategy, scan_cache_dir

from test_cache import CONFIG_V1, CONFIG_V2, WEIGHTS, add_revision, age
from vllm_course import cache, plots
from vllm_course.errors import CacheTargetError, PlotInputError
from vllm_course.widgets import CacheBrowser


@pytest.fixture()
def cached(tmp_path: Path) -> tuple[Path, str, str]:
    """org/model with an old detached revision and `main` (they share the weights blob)."""
    folder = tmp_path / "hf" / "hub"
    folder.mkdir(parents=True)
    old = add_revision(folder, "org/model", {"config.json": CONFIG_V1, "model.safetensors": WEIGHTS})
    age(folder, "org/model", 3)
    new = add_revision(folder, "org/model", {"config.json": CONFIG_V2, "model.safetensors": WEIGHTS})
    return folder, old, new


class TestTextBrowser:
    def test_lists_revisions_and_marks_selection(self, cached: tuple[Path, str, str]) -> None:
        """Does the text view list every revision with its size, and tick the selected one?"""
        folder, old, new = cached
        browser = CacheBrowser(folder, use_widgets=False)
        assert browser._ui is None and browser._repr_mimebundle_() == {"text/plain": browser.text()}
        lines = browser.select(old[:8]).text().splitlines()
        assert lines[0] == f"Cache browser: 2 revision(s) of 1 repo(s), 10.1 kB on disk in {folder.resolve()}"
        assert lines[1].split() == ["[", "]", "org/model", new[:8], "main", "10.1", "kB"]
        assert lines[2].split() == ["[x]", "org/model", old[:8], "-", "10.0", "kB"]
        assert lines[3].startswith("1 selected: browser.plan()")

    def test_plan_then_confirm_deletes_through_the_cache_package(self, cached: tuple[Path, str, str]) -> None:
        """Does plan() show the library's dry run and bytes, and only confirm() delete?"""
        folder, old, new = cached
        browser = CacheBrowser(folder, use_widgets=False)
        plan = browser.select(f"org/model@{old}").plan()
        assert isinstance(plan, DeleteCacheStrategy) and plan.expected_freed_size == len(CONFIG_V1)
        assert f'button "Delete, free {len(CONFIG_V1)} B"' in browser.text()
        assert (folder / "models--org--model" / "snapshots" / old).is_dir()
        assert browser.confirm() == len(CONFIG_V1)  # measured by scanning again
        assert [rev.commit_hash for _, rev in cache.revisions(browser.info)] == [new]
        assert browser.text().endswith(f"Deleted 1 revision(s): freed {len(CONFIG_V1)} B (planned {len(CONFIG_V1)} B); "
                                       "10.1 kB left in the cache.") and browser.pending is None
        with pytest.raises(CacheTargetError, match=r"^'org/model@0000000' names no repo or revision in the cache"):
            browser.select("org/model@0000000")

    def test_cancel_and_misuse(self, cached: tuple[Path, str, str]) -> None:
        """Does cancel() delete nothing, and are plan/confirm without a selection one-line errors?"""
        folder, old, _ = cached
        browser = CacheBrowser(folder, use_widgets=False)
        with pytest.raises(CacheTargetError, match=r"^Nothing is selected: select revisions first"):
            browser.plan()
        with pytest.raises(CacheTargetError, match=r"^No deletion is pending"):
            browser.confirm()
        browser.select(old).plan()
        assert browser.cancel().text().endswith("Cancelled: nothing was deleted.")
        assert sum(len(repo.revisions) for repo in scan_cache_dir(folder).repos) == 2


class TestWidgetBrowser:
    def test_clicks_walk_through_plan_confirm(self, cached: tuple[Path, str, str]) -> None:
        """Clicking "Delete selected...", then "Delete, free N": does it plan, show the bytes, then delete?"""
        folder, old, new = cached
        browser = CacheBrowser(folder, use_widgets=True)
        ui = browser._ui
        assert ui["delete"].disabled and ui["confirm_box"].layout.display == "none"
        ui["list"].value = (f"org/model@{old}",)  # what ticking the row does
        assert [r.commit_hash for r in browser.selected] == [old] and not ui["delete"].disabled
        ui["delete"].click()
        assert ui["confirm_box"].layout.display == "flex"
        assert ui["confirm"].description == f"Delete, free {len(CONFIG_V1)} B"
        assert "Dry run: delete 1 revision(s), freeing 41 B" in ui["plan"].value
        ui["confirm"].click()
        assert [rev.commit_hash for _, rev in cache.revisions(scan_cache_dir(folder))] == [new]
        assert ui["list"].options == ((f"org/model  {new[:8]}  [main]  10.1 kB", f"org/model@{new}"),)
        assert ui["status"].value.startswith("Deleted 1 revision(s)")

    def test_mimebundle_has_widget_view_and_text_fallback(self, cached: tuple[Path, str, str]) -> None:
        """Does Jupyter get the widget view plus our text as text/plain (what nbval compares)?"""
        folder, _, _ = cached
        browser = CacheBrowser(folder, use_widgets=True)
        bundle = browser._repr_mimebundle_()
        assert bundle["text/plain"] == browser.text()
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == browser._ui["box"].model_id

    def test_error_in_a_button_shows_in_status(self, cached: tuple[Path, str, str]) -> None:
        """Does a click that cannot work (the revision vanished) show a one-line error, not a traceback?"""
        folder, old, _ = cached
        browser = CacheBrowser(folder, use_widgets=True)
        browser.select(old).plan()
        cache.safe_delete_revisions(scan_cache_dir(folder), old).execute()  # someone else deleted it meanwhile
        browser._ui["confirm"].click()
        assert browser._ui["status"].value.startswith("error: This plan&#x27;s revisions are no longer in the cache")


class TestPlots:
    def test_bar_chart_is_png_figure_with_labels(self) -> None:
        """Does bar_chart return a figure that renders PNG bytes, with the given labels and annotations?"""
        fig = plots.bar_chart(["bf16", "GPTQ"], [269.1, 114.6], unit="MB", title="Checkpoint size")
        assert repr(fig) == "<PngFigure size 700x170 with 1 Axes>"
        assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["bf16", "GPTQ"]
        assert [t.get_text() for t in ax.texts] == ["269.1 MB", "114.6 MB"] and ax.get_title() == "Checkpoint size"

    def test_bar_chart_rejects_mismatch(self) -> None:
        """Are mismatched or negative values one-line PlotInputErrors?"""
        with pytest.raises(PlotInputError, match=r"^bar_chart needs one value per label: got 2 label\(s\) and 1 value\(s\)\.$"):
            plots.bar_chart(["a", "b"], [1])
        with pytest.raises(PlotInputError, match="numbers >= 0"):
            plots.bar_chart(["a"], [-1], unit="MB")

    def test_cache_size_chart_biggest_first(self, cached: tuple[Path, str, str], tmp_path: Path) -> None:
        """Does the cache chart draw one bar per repo, biggest first, labelled with sizes; and refuse an empty cache?"""
        folder, _, _ = cached
        add_revision(folder, "org/small", {"config.json": CONFIG_V1})
        fig = plots.cache_size_chart(scan_cache_dir(folder))
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["org/model", "org/small"]
        assert [t.get_text() for t in ax.texts] == ["10.1 kB", "41 B"] and ax.get_title() == "Hugging Face cache: 10.1 kB on disk"
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(PlotInputError, match="holds no repos yet"):
            plots.cache_size_chart(scan_cache_dir(empty))
