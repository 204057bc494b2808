"""Small matplotlib charts for lessons: a labelled bar chart, and the cache's size per repo.

Charts are built on `matplotlib.figure.Figure` (no pyplot, so a notebook never shows one twice)
and returned as a `PngFigure`, which Jupyter displays as PNG whether or not the inline backend
is active. nbval compares only the figure's text form (`<PngFigure size 700x220 with 1 Axes>`).

Example:
    >>> from vllm_course import plots                                   # doctest: +SKIP
    >>> plots.bar_chart(["bf16", "GPTQ"], [269.1, 114.6], unit="MB", title="Checkpoint size")
    <PngFigure size 700x170 with 1 Axes>
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure

from .cache_scan import CacheScan, format_bytes
from .errors import PlotInputError

_BAR_COLOR = "#4C72B0"


class PngFigure(Figure):
    """A matplotlib `Figure` that Jupyter shows as a PNG image (never SVG)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def bar_chart(labels: Sequence[str], values: Sequence[float], *, unit: str = "", title: str = "",
              value_labels: Sequence[str] | None = None, horizontal: bool = True) -> PngFigure:
    """Draw one bar per label, each annotated with its value.

    Args:
        labels: one name per bar (top to bottom when horizontal).
        values: one number per bar, already in `unit`.
        unit: axis unit, e.g. "MB" or "tok/s" (also appended to the annotations).
        title: chart title.
        value_labels: annotations to use instead of `f"{value:g} {unit}"`.
        horizontal: horizontal bars (long repo ids read better) or vertical ones.

    Returns:
        A `PngFigure`; return it from a cell to display it.

    Raises:
        PlotInputError: no bars, lengths differ, or a value is negative or not a number.

    Example:
        >>> bar_chart(["batch", "single"], [190, 28], unit="tok/s", title="bf16 on 2 cores")  # doctest: +SKIP
    """
    labels, values = list(labels), list(values)
    if not labels or len(labels) != len(values):
        raise PlotInputError(f"bar_chart needs one value per label: got {len(labels)} label(s) and "
                             f"{len(values)} value(s).")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values):
        raise PlotInputError(f"bar_chart values must be numbers >= 0 (in {unit or 'one unit'}): got {values!r}.")
    notes = list(value_labels) if value_labels is not None else [f"{v:g} {unit}".strip() for v in values]
    if len(notes) != len(values):
        raise PlotInputError(f"value_labels has {len(notes)} entries for {len(values)} bars: give one per bar.")
    height = 0.45 * len(labels) + 0.8 if horizontal else 3.0
    fig = PngFigure(figsize=(7, height), layout="constrained")
    ax = fig.add_subplot()
    positions = list(range(len(labels)))
    if horizontal:
        bars = ax.barh(positions, values, color=_BAR_COLOR)
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(values) * 1.25 or 1)
    else:
        bars = ax.bar(positions, values, color=_BAR_COLOR)
        ax.set_xticks(positions, labels)
        ax.set_ylabel(unit)
        ax.set_ylim(0, max(values) * 1.25 or 1)
    ax.bar_label(bars, notes, padding=3)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def cache_size_chart(scan: CacheScan, *, by: str = "repo", title: str | None = None) -> PngFigure:
    """Bar chart of the cache's size per repo (or per revision), biggest first, in MB.

    Args:
        scan: a `vllm_course.cache.scan()` result.
        by: "repo" (one bar per repo) or "revision" (one bar per `repo@short-hash`).
        title: chart title (default: the total and the cache folder's name).

    Raises:
        PlotInputError: the cache is empty, or `by` is neither "repo" nor "revision".
    """
    if by == "repo":
        rows = [(r.repo_id, r.size_on_disk) for r in scan.repos]
    elif by == "revision":
        rows = [(f"{r.repo_id}@{r.short_hash}", r.size_on_disk) for r in scan.revisions]
    else:
        raise PlotInputError(f"by={by!r}: use by='repo' or by='revision'.")
    if not rows:
        raise PlotInputError(f"The cache {scan.cache_dir} holds no repos yet: download one first.")
    rows.sort(key=lambda item: -item[1])
    title = title or f"Hugging Face cache: {format_bytes(scan.size_on_disk)} on disk"
    return bar_chart([name for name, _ in rows], [size / 1e6 for _, size in rows], unit="MB", title=title,
                     value_labels=[format_bytes(size) for _, size in rows])
