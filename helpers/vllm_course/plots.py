"""Small matplotlib charts for lessons: a labelled bar chart, the cache's size per repo. Figures without pyplot (a
notebook never shows one twice), shown as PNG; nbval compares their text (`<PngFigure size 700x170 with 1 Axes>`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from .cache import format_bytes
from .errors import PlotInputError

if TYPE_CHECKING:
    from huggingface_hub import HFCacheInfo


class PngFigure(Figure):
    """A matplotlib `Figure` that Jupyter shows as a PNG image (never SVG)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def bar_chart(labels: Sequence[str], values: Sequence[float], *, unit: str = "", title: str = "",
              value_labels: Sequence[str] | None = None) -> PngFigure:
    """One horizontal bar per label (top to bottom), annotated with its value in `unit` or its `value_labels`
    (PlotInputError: no bars, lengths differ, or a value is negative or not a number)."""
    labels, values = list(labels), list(values)
    if not labels or len(labels) != len(values):
        raise PlotInputError(f"bar_chart needs one value per label: got {len(labels)} label(s) and "
                             f"{len(values)} value(s).")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values):
        raise PlotInputError(f"bar_chart values must be numbers >= 0 (in {unit or 'one unit'}): got {values!r}.")
    notes = list(value_labels) if value_labels is not None else [f"{v:g} {unit}".strip() for v in values]
    fig = PngFigure(figsize=(7, 0.45 * len(labels) + 0.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar_label(ax.barh(range(len(labels)), values, color="#4C72B0"), notes, padding=3)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(xlabel=unit, xlim=(0, max(values) * 1.25 or 1), title=title)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def cache_size_chart(info: HFCacheInfo, *, title: str | None = None) -> PngFigure:
    """Bar chart of a `scan_cache_dir()` result's size per repo, biggest first, in MB (PlotInputError if none)."""
    rows = sorted(((repo.repo_id, repo.size_on_disk) for repo in info.repos), key=lambda item: (-item[1], item[0]))
    if not rows:
        raise PlotInputError(f"The cache {info.cache_dir} holds no repos yet: download one first.")
    title = title or f"Hugging Face cache: {format_bytes(info.size_on_disk)} on disk"
    return bar_chart([name for name, _ in rows], [size / 1e6 for _, size in rows], unit="MB", title=title,
                     value_labels=[format_bytes(size) for _, size in rows])
