"""vllm_course.bench and benchmarks/bench_quantized.py: structure and sanity of the figures, never their speed.

The arithmetic tests build results from plain numbers; the engine tests run the benchmark's timing
loop (the one lesson 06 teaches) on real vLLM (CPU build) with a tiny workload and check that the
parts add up.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from vllm_course import bench  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "bench_quantized", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quantized.py")
bench_quantized = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_quantized)


def _throughput(tokens=(64, 64, 64), seconds=(0.5, 0.4, 0.8), prompts=1, max_tokens=64) -> bench.Throughput:
    return bench.Throughput(prompts, max_tokens, tokens, seconds, warmup=1)


def _result(label: str, file_bytes: int, rss: int, batch_s: float, single_s: float) -> bench.BenchResult:
    return bench.BenchResult(
        label=label, model=f"course/{label}", device="cpu", quantization=None, load_seconds=3.0,
        checkpoint_gib=round(file_bytes / 2**30, 2), weights_gib=round(file_bytes / 2**30, 2),
        file_bytes=file_bytes, rss_before_bytes=rss // 2, rss_bytes=rss, gpu_bytes=None,
        batch=_throughput((512,), (batch_s,), prompts=8), single=_throughput((64,), (single_s,)),
    )


class TestThroughputArithmetic:
    def test_are_rates_tokens_over_seconds(self):
        """Is each run's rate its tokens divided by its seconds?"""
        t = _throughput()
        assert t.rates == pytest.approx((128.0, 160.0, 80.0))

    def test_is_the_median_between_min_and_max(self):
        """Is the median the middle run, with low <= median <= high and spread relative to it?"""
        t = _throughput()
        assert (t.low, t.median, t.high) == pytest.approx((80.0, 128.0, 160.0))
        assert t.spread == pytest.approx((160 - 80) / 128)

    def test_does_the_text_name_runs_and_median(self):
        """Does str() give the workload, the median and the number of runs?"""
        assert str(_throughput()) == "1 x 64 tokens: 128.0 tok/s median (min 80.0, max 160.0, 3 runs)"


class TestComparison:
    @pytest.fixture()
    def comparison(self) -> bench.Comparison:
        return bench.Comparison((_result("bf16", 269_060_552, 2 * 2**30, 2.0, 2.0),
                                 _result("GPTQ", 114_600_000, 2**30 + 2**29, 4.0, 2.5)))

    def test_are_ratios_computed_from_the_parts(self, comparison):
        """Is every ratio the other result's figure over the baseline's?"""
        ratios = comparison.ratios()["GPTQ"]
        assert ratios["weights"] == pytest.approx(114_600_000 / 269_060_552)
        assert ratios["process RSS"] == pytest.approx(0.75)
        assert ratios["batch tok/s"] == pytest.approx(0.5)
        assert ratios["single tok/s"] == pytest.approx(0.8)
        assert ratios["load"] == pytest.approx(1.0)
        assert set(comparison.ratios()) == {"GPTQ"}

    def test_does_the_table_show_values_and_ratios(self, comparison):
        """Does the text table carry both labels, MB figures and bracketed ratios?"""
        table = comparison.table()
        assert table.splitlines()[0].split() == ["metric", "bf16", "GPTQ"]
        assert "269.1" in table and "114.6 (0.43x)" in table
        assert "batch tok/s (tok/s)" in table and "(0.50x)" in table
        assert "<td>114.6 (0.43x)</td>" in comparison._repr_html_()

    def test_is_a_missing_figure_a_dash_not_a_crash(self):
        """Without a single-prompt run, does the table show '-' and the ratio None?"""
        r = _result("bf16", 10, 10, 1.0, 1.0)
        c = bench.Comparison((r, bench.BenchResult(**{**r.__dict__, "label": "x", "single": None})))
        assert c.ratio(c.results[1], "single tok/s") is None
        assert [row for row in c.rows() if row[0].startswith("single")][0][2] == "-"

    def test_does_the_chart_have_three_panels_and_save_a_png(self, comparison, tmp_path):
        """Does plot() draw weights, RSS and tokens/s panels and write a PNG file?"""
        fig = bench.plot(comparison, tmp_path / "chart.png")
        assert len(fig.axes) == 3
        assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert any("0.43x" in t.get_text() for t in fig.axes[0].texts)


@pytest.mark.slow
class TestRealEngine:
    def test_does_a_real_run_add_up(self, base_model):
        """On the bf16 model, does every run generate prompts x max_tokens and every figure make sense?"""
        result = bench_quantized.measure_model(str(base_model), "bf16", prompts=2, max_tokens=8, repeats=2)
        assert result.batch.tokens == (16, 16) and result.single.tokens == (8, 8)
        for t in (result.batch, result.single):
            assert all(s > 0 for s in t.seconds)
            assert t.low <= t.median <= t.high
        assert result.file_bytes == (base_model / "model.safetensors").stat().st_size
        assert result.weights_mb == pytest.approx(result.file_bytes / 1e6)
        assert result.device == "cpu" and result.quantization is None
        assert result.rss_bytes > 0 and result.load_seconds > 0

    def test_is_the_quantized_model_smaller_with_ratios_from_the_parts(self, base_model, quantized_model, quant):
        """bf16 vs this machine's quantized model (GPTQ, or W8A8 on AVX2) in one run: smaller, ratios consistent?"""
        label = "GPTQ" if quant.w4a16 else "W8A8"
        c = bench.Comparison(tuple(bench_quantized.measure_model(str(model), name, prompts=2, max_tokens=8,
                                                                  repeats=1, single=False)
                                   for name, model in (("bf16", base_model), (label, quantized_model))))
        bf16, quantized = c.results
        assert quantized.quantization == ("gptq" if quant.w4a16 else "compressed-tensors")
        assert quantized.file_bytes < (0.5 if quant.w4a16 else 0.7) * bf16.file_bytes
        assert c.ratios()[label]["batch tok/s"] == pytest.approx(quantized.batch.median / bf16.batch.median)
        assert c.ratios()[label]["single tok/s"] is None
