"""Figures of a loaded vLLM engine, side by side: weights, process memory, tokens/s, ratios, a chart.

The timing itself is taught code: lesson 06 (and benchmarks/bench_quantized.py) time
`llm.generate` and hand the runs to `Throughput`; this module only holds, tabulates and draws::

    result = bench.BenchResult.from_report(report, "bf16", batch=Throughput(8, 32, tokens, seconds, warmup=1))
    print(bench.Comparison((bf16, gptq)))          # ratios to the first result
    bench.plot(comparison)

Compare models by ratios measured in one run, never against figures from another day.
"""

from __future__ import annotations

import dataclasses
import html
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import console, formats

@dataclass(frozen=True)
class Throughput:
    """Generated tokens per second of identical runs, measured after warm-up.

    Attributes:
        prompts: requests per run (1 = a single prompt, K = a batch vLLM schedules together).
        max_tokens: tokens generated per request.
        tokens: tokens generated in each measured run.
        seconds: wall time of each measured run.
        warmup: runs done first and not counted.
    """

    prompts: int
    max_tokens: int
    tokens: tuple[int, ...]
    seconds: tuple[float, ...]
    warmup: int

    @property
    def rates(self) -> tuple[float, ...]:
        """Tokens per second of each measured run."""
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
    """One model, loaded once: its memory and its speed on this machine.

    Attributes:
        label: short name for tables and charts ("bf16", "GPTQ").
        model: model id or folder.
        device: "cpu" or "cuda".
        quantization: quant_method from config.json (None: not quantized).
        load_seconds: wall time of the `LLM(...)` call.
        checkpoint_gib: "Checkpoint size" from vLLM's log (2 decimals; CPU and GPU).
        weights_gib: vLLM's weights figure (`LoadReport.weights_gib`: GPU memory taken by the
            weights, or on CPU the checkpoint size). vLLM logs some lines once per process, so
            a second load of the same files may leave it None.
        file_bytes: bytes of the weight files vLLM read (what "Checkpoint size" rounds; None:
            the folder is unknown).
        rss_before_bytes: this process's RSS before the load.
        rss_bytes: this process's RSS after the load (CPU: weights, KV cache, runtime).
        gpu_bytes: torch.cuda.memory_allocated() after the load (None on CPU).
        batch: throughput of a batch of prompts.
        single: throughput of one prompt (None: not measured).
    """

    label: str
    model: str
    device: str
    quantization: str | None
    load_seconds: float
    checkpoint_gib: float | None
    weights_gib: float | None
    file_bytes: int | None
    rss_before_bytes: int | None
    rss_bytes: int | None
    gpu_bytes: int | None
    batch: Throughput
    single: Throughput | None = None

    @property
    def weights_bytes(self) -> int | None:
        """Weights memory by vLLM's own account, in bytes.

        GPU: "Model loading took X GiB memory" (what the weights took on the device). CPU: the
        checkpoint vLLM read, exact from the files (vLLM logs it rounded as "Checkpoint size");
        vLLM's CPU backend repacks linear weights for oneDNN or its 4-bit kernel, about as big.
        """
        if self.device == "cuda" and self.weights_gib is not None:
            return int(self.weights_gib * 2**30)
        if self.file_bytes is not None:
            return self.file_bytes
        return None if self.checkpoint_gib is None else int(self.checkpoint_gib * 2**30)

    @property
    def weights_mb(self) -> float | None:
        """`weights_bytes` in MB (10**6 bytes)."""
        return None if self.weights_bytes is None else self.weights_bytes / 1e6

    @property
    def rss_gib(self) -> float | None:
        return None if self.rss_bytes is None else self.rss_bytes / 2**30

    @classmethod
    def from_report(cls, report: Any, label: str, batch: Throughput, single: Throughput | None = None,
                    rss_before_bytes: int | None = None) -> BenchResult:
        """A result from a `load_report()` (memory, load time) and the throughputs a lesson measured."""
        report = getattr(report, "report", None) or report
        files, quantization = _file_bytes(report.model)
        return cls(label=label, model=report.model, device=report.device,
                   quantization=quantization if files is not None else report.quantization,
                   load_seconds=report.seconds, checkpoint_gib=report.checkpoint_gib,
                   weights_gib=report.weights_gib, file_bytes=files, rss_before_bytes=rss_before_bytes,
                   rss_bytes=report.rss_bytes, gpu_bytes=report.gpu_bytes, batch=batch, single=single)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (to pass a result between processes or save it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Rebuild a result from `to_dict()` output."""
        runs = {k: Throughput(**{**data[k], "tokens": tuple(data[k]["tokens"]),
                                 "seconds": tuple(data[k]["seconds"])}) if data.get(k) else None
                for k in ("batch", "single")}
        return cls(**{**data, **runs})

    def __str__(self) -> str:
        lines = [f"{self.label}: {self.model} on {self.device}"
                 + (f" (quantization {self.quantization})" if self.quantization else "")]
        if self.weights_mb is not None:
            lines.append(f"  weights {self.weights_mb:.1f} MB")
        if self.rss_bytes is not None:
            lines.append(f"  process RSS {self.rss_bytes / 2**30:.2f} GiB")
        if self.gpu_bytes is not None:
            lines.append(f"  GPU memory {self.gpu_bytes / 2**30:.2f} GiB")
        lines.append(f"  load {self.load_seconds:.1f} s")
        lines.append(f"  batch  {self.batch}")
        if self.single is not None:
            lines.append(f"  single {self.single}")
        return "\n".join(lines)


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
        """The raw figure of `metric` (a key of METRICS) for one result."""
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
                cell = "-" if value is None else fmt.format(value)
                if r is not self.baseline and ratio is not None:
                    cell += f" ({ratio:.2f}x)"
                row.append(cell)
            rows.append(row)
        return rows

    def table(self) -> str:
        """A plain-text table with ratios to the baseline in brackets."""
        rows = self.rows()
        return console.table(rows, right=range(1, len(rows[0])))

    def _repr_html_(self) -> str:
        rows = self.rows()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        return self.table()


def _file_bytes(model: str) -> tuple[int | None, str | None]:
    """Bytes of the weight files vLLM reads for `model` (a folder or a cached repo id), and its quant_method."""
    folder = formats.model_folder(model)
    if folder is None:
        return None, None
    found = formats.inspect_folder(folder)
    return sum((found.path / n).stat().st_size for n in found.picks("auto")), found.quantization


def plot(comparison: Comparison, path: str | Path | None = None) -> Any:
    """Side-by-side bars for weights, process memory and tokens/s, with ratios to the baseline.

    Tokens/s bars show the median run, with whiskers from the slowest to the fastest run.

    Args:
        comparison: what `compare` returned (or `Comparison((bf16_result, gptq_result))`).
        path: also save the chart there as PNG.

    Returns:
        The matplotlib Figure: a notebook shows it when it is the cell's last expression.
    """
    import matplotlib.pyplot as plt

    panels = [("weights", "weights (MB)"), ("process RSS", "process RSS (GiB)"),
              (("batch tok/s", "single tok/s"), "generated tokens/s")]
    labels = [r.label for r in comparison.results]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    plt.close(fig)  # pyplot forgets it: a notebook shows it once, as the cell's value, not again at the end
    for ax, (metrics, title) in zip(axes, panels):
        group = (metrics,) if isinstance(metrics, str) else metrics
        width = 0.8 / len(group)
        for j, metric in enumerate(group):
            xs = [i + (j - (len(group) - 1) / 2) * width for i in range(len(labels))]
            values = [comparison.value(r, metric) or 0.0 for r in comparison.results]
            runs = [_runs(r, metric) for r in comparison.results]
            spread = None
            if all(runs):  # tokens/s: the bar is the median, the whisker spans the fastest and slowest run
                spread = [[v - t.low for v, t in zip(values, runs)], [t.high - v for v, t in zip(values, runs)]]
            bars = ax.bar(xs, values, width * 0.95, yerr=spread, capsize=3,
                          label=metric if len(group) > 1 else None)
            for bar, r, t in zip(bars, comparison.results, runs):
                ratio = comparison.ratio(r, metric)
                text = METRICS[metric][2].format(bar.get_height())
                if r is not comparison.baseline and ratio is not None:
                    text += f"\n{ratio:.2f}x"
                top = max(bar.get_height(), t.high if t else 0.0)
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.25)
        if len(group) > 1:
            ax.legend(fontsize=8, loc="upper right")
    device = comparison.baseline.device
    fig.suptitle(f"Measured on {device}; ratios are to {comparison.baseline.label}", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _runs(result: BenchResult, metric: str) -> Throughput | None:
    """The measured runs behind a tokens/s metric (None for other metrics)."""
    return {"batch tok/s": result.batch, "single tok/s": result.single}.get(metric)
