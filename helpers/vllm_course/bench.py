"""Loaded vLLM engines side by side (lesson 06, benchmarks/bench_quantized.py): weights, process memory, tokens/s,
ratios, a chart. Compare models by ratios measured in one run, never across days."""

from __future__ import annotations

import html
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import console, formats


@dataclass(frozen=True)
class Throughput:
    """Generated tokens per second of identical runs (`warmup` runs done first are not counted)."""

    prompts: int  # requests per run (1 = a single prompt, K = a batch vLLM schedules together)
    max_tokens: int  # per request
    tokens: tuple[int, ...]  # generated in each measured run
    seconds: tuple[float, ...]  # wall time of each measured run
    warmup: int

    @property
    def rates(self) -> tuple[float, ...]:
        return tuple(t / s for t, s in zip(self.tokens, self.seconds))

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def low(self) -> float:
        return min(self.rates)

    @property
    def high(self) -> float:
        return max(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 means the runs differed by 10 %."""
        return (self.high - self.low) / self.median

    def __str__(self) -> str:
        return (f"{self.prompts} x {self.max_tokens} tokens: {self.median:.1f} tok/s median "
                f"(min {self.low:.1f}, max {self.high:.1f}, {len(self.rates)} runs)")


@dataclass(frozen=True)
class BenchResult:
    """One model, loaded once: its memory and its speed on this machine."""

    label: str  # for tables and charts ("bf16", "GPTQ")
    model: str  # model id or folder
    device: str  # "cpu" or "cuda"
    quantization: str | None  # quant_method from config.json
    load_seconds: float  # wall time of `LLM(...)`
    checkpoint_gib: float | None  # "Checkpoint size" from vLLM's log (2 decimals)
    weights_gib: float | None  # `LoadReport.weights_gib`; None when vLLM logged it once per process
    file_bytes: int | None  # weight files vLLM read (None: folder unknown)
    rss_before_bytes: int | None  # this process's RSS before the load
    rss_bytes: int | None  # and after it (CPU: weights, KV cache, runtime)
    gpu_bytes: int | None  # torch.cuda.memory_allocated() after the load (None on CPU)
    batch: Throughput  # a batch of prompts
    single: Throughput | None = None  # one prompt (None: not measured)

    @property
    def weights_bytes(self) -> int | None:
        """Weights memory by vLLM's account: GPU "Model loading took X GiB"; CPU the checkpoint files read."""
        if self.device == "cuda" and self.weights_gib is not None:
            return int(self.weights_gib * 2**30)
        if self.file_bytes is not None:
            return self.file_bytes
        return None if self.checkpoint_gib is None else int(self.checkpoint_gib * 2**30)

    @property
    def weights_mb(self) -> float | None:
        return None if self.weights_bytes is None else self.weights_bytes / 1e6

    @property
    def rss_gib(self) -> float | None:
        return None if self.rss_bytes is None else self.rss_bytes / 2**30

    @classmethod
    def from_report(cls, report: Any, label: str, batch: Throughput, single: Throughput | None = None,
                    rss_before_bytes: int | None = None) -> BenchResult:
        """A result from a `load_report()` (memory, load time) and the throughputs a lesson measured."""
        report = getattr(report, "report", None) or report
        files = quantization = None
        if (folder := formats.model_folder(report.model)) is not None:  # a folder or a cached repo id
            found = formats.inspect_folder(folder)
            files = sum((found.path / n).stat().st_size for n in found.picks("auto"))  # the files vLLM reads
            quantization = found.quantization
        return cls(label=label, model=report.model, device=report.device, quantization=quantization,
                   load_seconds=report.seconds, checkpoint_gib=report.checkpoint_gib, weights_gib=report.weights_gib,
                   file_bytes=files, rss_before_bytes=rss_before_bytes, rss_bytes=report.rss_bytes,
                   gpu_bytes=report.gpu_bytes, batch=batch, single=single)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Rebuild a result from `to_dict()` output."""
        runs = {k: Throughput(**{**data[k], "tokens": tuple(data[k]["tokens"]),
                                 "seconds": tuple(data[k]["seconds"])}) if data.get(k) else None
                for k in ("batch", "single")}
        return cls(**{**data, **runs})

    def __str__(self) -> str:
        quantization = f" (quantization {self.quantization})" if self.quantization else ""
        lines = [f"{self.label}: {self.model} on {self.device}{quantization}",
                 self.weights_mb is not None and f"  weights {self.weights_mb:.1f} MB",
                 self.rss_bytes is not None and f"  process RSS {self.rss_bytes / 2**30:.2f} GiB",
                 self.gpu_bytes is not None and f"  GPU memory {self.gpu_bytes / 2**30:.2f} GiB",
                 f"  load {self.load_seconds:.1f} s", f"  batch  {self.batch}",
                 self.single is not None and f"  single {self.single}"]
        return "\n".join(line for line in lines if line)  # the False of each missing figure dropped


# name -> (how to read it from a BenchResult, unit, format)
METRICS: dict[str, tuple[Callable[[BenchResult], float | None], str, str]] = {
    "weights": (lambda r: r.weights_mb, "MB", "{:.1f}"),
    "process RSS": (lambda r: r.rss_gib, "GiB", "{:.2f}"),
    "batch tok/s": (lambda r: r.batch.median, "tok/s", "{:.1f}"),
    "single tok/s": (lambda r: r.single.median if r.single else None, "tok/s", "{:.1f}"),
    "load": (lambda r: r.load_seconds, "s", "{:.1f}"),
}


@dataclass(frozen=True)
class Comparison:
    """Several `BenchResult`s measured in one run; the first is the baseline of every ratio."""

    results: tuple[BenchResult, ...]

    @property
    def baseline(self) -> BenchResult:
        return self.results[0]

    def value(self, result: BenchResult, metric: str) -> float | None:
        return METRICS[metric][0](result)

    def ratio(self, result: BenchResult, metric: str) -> float | None:
        """`metric` of `result` divided by the baseline's (None when either is missing)."""
        mine, base = self.value(result, metric), self.value(self.baseline, metric)
        return None if mine is None or not base else mine / base

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """{label: {metric: ratio to the baseline}} for every result but the baseline."""
        return {r.label: {m: self.ratio(r, m) for m in METRICS} for r in self.results[1:]}

    def rows(self) -> list[list[str]]:
        """Table cells: a header row, then one row per metric ("value (ratio x)")."""
        rows = [["metric"] + [r.label for r in self.results]]
        for metric, (_, unit, fmt) in METRICS.items():
            row = [f"{metric} ({unit})"]
            for r in self.results:
                value, ratio = self.value(r, metric), self.ratio(r, metric)
                note = f" ({ratio:.2f}x)" if r is not self.baseline and ratio is not None else ""
                row.append(("-" if value is None else fmt.format(value)) + note)
            rows.append(row)
        return rows

    def table(self) -> str:
        return console.table(self.rows(), right=range(1, len(self.results) + 1))  # every column but the metric's

    def _repr_html_(self) -> str:
        rows = self.rows()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    __str__ = table


def plot(comparison: Comparison, path: str | Path | None = None) -> Any:
    """Bars for weights, process memory and tokens/s (median, whiskers min to max), ratios to the baseline;
    also saved as PNG at `path`. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    panels = [(("weights",), "weights (MB)"), (("process RSS",), "process RSS (GiB)"),
              (("batch tok/s", "single tok/s"), "generated tokens/s")]
    labels = [r.label for r in comparison.results]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    plt.close(fig)  # pyplot forgets it: a notebook shows it once, as the cell's value, not again at the end
    for ax, (group, title) in zip(axes, panels):
        width = 0.8 / len(group)
        for j, metric in enumerate(group):
            xs = [i + (j - (len(group) - 1) / 2) * width for i in range(len(labels))]
            values = [comparison.value(r, metric) or 0.0 for r in comparison.results]
            runs = [{"batch tok/s": r.batch, "single tok/s": r.single}.get(metric) for r in comparison.results]
            spread = ([[v - t.low for v, t in zip(values, runs)], [t.high - v for v, t in zip(values, runs)]]
                      if all(runs) else None)
            bars = ax.bar(xs, values, width * 0.95, yerr=spread, capsize=3, label=metric if len(group) > 1 else None)
            for bar, r, t in zip(bars, comparison.results, runs):
                ratio = comparison.ratio(r, metric)
                note = f"\n{ratio:.2f}x" if r is not comparison.baseline and ratio is not None else ""
                text = METRICS[metric][2].format(bar.get_height()) + note
                top = max(bar.get_height(), t.high if t else 0.0)
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.25)
        if len(group) > 1:
            ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Measured on {comparison.baseline.device}; ratios are to {comparison.baseline.label}", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
