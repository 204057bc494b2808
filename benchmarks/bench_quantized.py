"""bf16 vs the quantized models this machine runs: weights, process memory, tokens/s, side by side.

Run: .venv/bin/python benchmarks/bench_quantized.py [--rounds 2] [--prompts 8] [--max-tokens 64]
                                                       [--repeats 3] [--png chart.png]
                                                       [--base-dtypes bfloat16,float16]
                                                       [--emulate AVX512|AVX2]

Which models: W8A8 always; GPTQ and AWQ (4-bit) only where vLLM has the W4A16 kernel
(`vllm_course.machine.quant_support`; not on AVX2 CPUs). Every model runs in the dtype
`machine_kwargs()` picks (float32 on AVX2, the model's bf16 elsewhere), printed in the header;
`--base-dtypes` adds the bf16 checkpoint run in other dtypes, to see why that choice was made.

Each model is measured in a fresh Python process (so process RSS is not inherited from the model
before), after a warm-up run, with `--repeats` measured runs per workload: a batch of `--prompts`
prompts, and a single prompt, each generating `--max-tokens` tokens. With `--rounds 2` or more the
order alternates (bf16, GPTQ, AWQ, then AWQ, GPTQ, bf16 ...) so a machine that gets busier during
the run does not favour one model; the last tables give the median of each ratio over the rounds and
the fastest run of each model (interference from other work only ever slows a run down).

`--emulate AVX512` (on an AVX-512-BF16 CPU) measures what an AVX-512 CPU without BF16 would run, as
a labelled emulation, not a measurement of such a CPU: every process asks torch the ISA questions
with the BF16 and AMX answers forced to False (vLLM then loads its real `_C_AVX512` library and
`machine_kwargs()` decides as it would there), and oneDNN, which runs torch's bf16 matmuls, is capped
with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI (a Cascade Lake). `--emulate AVX2` likewise forces
vLLM's `_C_AVX2` library and caps oneDNN at AVX2.

This machine is shared and noisy: read the ratios of one run, not absolute figures, and re-run
before quoting anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from vllm_course import bench, config, engine
from vllm_course.build import require
from vllm_course.machine import quant_support, w8a8_dtype

PROMPTS = ("The capital of France is", "Write a short poem about the sea.",
           "Explain what a hash table is in one paragraph.", "List three uses of a screwdriver:",
           "def fibonacci(n):", "Once upon a time, in a small village,", "The three primary colours are",
           "Translate 'good morning' into Spanish and German.")


# --emulate: what torch answers (vLLM and the course both ask it) and oneDNN's ISA cap, per emulated CPU.
EMULATED = {"AVX512": ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, "AVX512_CORE_VNNI"),
            "AVX2": ({"_is_avx512_supported": False, "_is_avx512_bf16_supported": False,
                      "_is_amx_tile_supported": False}, "AVX2")}


def emulate(isa: str) -> None:
    """Make torch's CPU ISA checks in this process answer as on an `isa` CPU (see the module docstring)."""
    import torch

    for name, value in EMULATED[isa][0].items():
        setattr(torch.cpu, name, lambda value=value: value)


def throughput(llm, prompts: int, max_tokens: int, repeats: int) -> bench.Throughput:
    """Generated tokens/s of `repeats` identical `llm.generate` calls after one untimed warm-up call
    (the loop lesson 06 teaches; every request generates exactly `max_tokens`: greedy, EOS ignored)."""
    from vllm import SamplingParams

    batch = [PROMPTS[i % len(PROMPTS)] for i in range(prompts)]
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    llm.generate(batch, params, use_tqdm=False)
    tokens, seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = llm.generate(batch, params, use_tqdm=False)
        seconds.append(time.perf_counter() - start)
        tokens.append(sum(len(out.outputs[0].token_ids) for out in outputs))
    return bench.Throughput(prompts, max_tokens, tuple(tokens), tuple(seconds), warmup=1)


def measure_model(model: str, label: str, prompts: int = 8, max_tokens: int = 64, repeats: int = 3,
                  single: bool = True, **llm_kwargs) -> bench.BenchResult:
    """Load `model` in this process, time a batch and (`single`) one prompt, release it."""
    from vllm import LLM

    before = engine.rss_bytes()
    with engine.load_report(model) as report:
        llm = LLM(model=model, **engine.machine_kwargs(**llm_kwargs))
    try:
        return bench.BenchResult.from_report(
            report, label, batch=throughput(llm, prompts, max_tokens, repeats),
            single=throughput(llm, 1, max_tokens, repeats) if single else None, rss_before_bytes=before)
    finally:
        engine.release(llm)


def _measure(label: str, model: str, options: dict, llm_kwargs: dict, isa: str | None = None) -> bench.BenchResult:
    """`measure_model` in a fresh process (so RSS is not inherited from the model before)."""
    command = [sys.executable, __file__, "--child", json.dumps([model, label, options, llm_kwargs])]
    env = dict(os.environ)
    if isa:
        command += ["--emulate", isa]
        env["ONEDNN_MAX_CPU_ISA"] = EMULATED[isa][1]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return bench.BenchResult.from_dict(json.loads(line[7:]))
    raise RuntimeError(f"benchmark of {label} ({model}) failed:\n{out.stderr[-3000:]}")


def _variants(base_dtypes: list[str]) -> dict[str, tuple[str, dict]]:
    """label -> (model folder, extra LLM kwargs): bf16 first, then what this machine can run."""
    support = quant_support()
    wanted = [("bf16", config.BASE_MODEL, {})]
    wanted += [(f"bf16@{d}", config.BASE_MODEL, {"dtype": d}) for d in base_dtypes]
    w8a8 = w8a8_dtype()  # bfloat16 on AMX: vLLM's int8 AMX GEMM takes no other
    wanted.append(("W8A8", config.W8A8_MODEL, {"dtype": w8a8} if w8a8 else {}))
    if support.w4a16:
        wanted += [("GPTQ", config.GPTQ_MODEL, {}), ("AWQ", config.AWQ_MODEL, {})]
    else:
        print(f"(GPTQ, AWQ: skipped, {support.why_w4a16})")
    found = {}
    for label, repo_id, kwargs in wanted:
        try:
            found[label] = (str(require(repo_id)), kwargs)
        except FileNotFoundError:
            print(f"({label}: {repo_id} is not built; skipped)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--png", help="save the chart of the last round here")
    parser.add_argument("--base-dtypes", default="", help="also run the bf16 checkpoint in these dtypes (comma list)")
    parser.add_argument("--emulate", choices=sorted(EMULATED), help="emulate a CPU without BF16 (AVX512) or AVX-512")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulate:
        emulate(args.emulate)
    if args.child:
        model, label, options, llm_kwargs = json.loads(args.child)
        print("RESULT " + json.dumps(measure_model(model, label, **options, **llm_kwargs).to_dict()))
        return
    options = {"prompts": args.prompts, "max_tokens": args.max_tokens, "repeats": args.repeats}

    support = quant_support()
    if args.emulate:
        print(f"EMULATED {args.emulate} CPU (torch's ISA checks forced, ONEDNN_MAX_CPU_ISA={EMULATED[args.emulate][1]})")
    print(f"machine: {support.device}, {support.isa} ({support.library}); "
          f"dtype from machine_kwargs(): {engine.machine_kwargs().get('dtype', 'auto (the model config: bfloat16)')}")
    variants = _variants([d for d in args.base_dtypes.split(",") if d])
    labels = list(variants)
    print(f"workload: batch {args.prompts} x {args.max_tokens} tokens and 1 x {args.max_tokens}, "
          f"1 warm-up + {args.repeats} runs each, a fresh process per model\n")
    ratios: dict[str, dict[str, list[float]]] = {}
    best: dict[str, dict[str, float]] = {}
    comparison = None
    for round_no in range(args.rounds):
        order = labels if round_no % 2 == 0 else labels[::-1]
        measured = {label: _measure(label, variants[label][0], options, variants[label][1], args.emulate)
                    for label in order}
        comparison = bench.Comparison(tuple(measured[label] for label in labels))
        print(f"round {round_no + 1} (order {', '.join(order)}; ratios to bf16)")
        print(comparison.table())
        for r in comparison.results:
            print(f"  {r.label:5s} batch runs {_runs(r.batch)}   single runs {_runs(r.single)}")
        print()
        for r in comparison.results:
            for kind, runs in (("batch", r.batch), ("single", r.single)):
                if runs is not None:
                    best.setdefault(r.label, {})[kind] = max(best.get(r.label, {}).get(kind, 0.0), runs.high)
        for label, per_metric in comparison.ratios().items():
            for metric, value in per_metric.items():
                if value is not None:
                    ratios.setdefault(label, {}).setdefault(metric, []).append(value)
    if args.rounds > 1:
        print(f"median ratio to bf16 over {args.rounds} rounds")
        for label, per_metric in ratios.items():
            print(f"  {label:5s} " + "  ".join(f"{m} {statistics.median(v):.2f}x" for m, v in per_metric.items()))
    print(f"\nfastest run of each model over {args.rounds} round(s): other work on the machine only slows a run")
    print("down, so the fastest run is the least disturbed estimate of what the hardware can do")
    base = best.get(labels[0], {})
    for label, kinds in best.items():
        parts = []
        for kind, rate in kinds.items():
            ratio = f" ({rate / base[kind]:.2f}x)" if label != labels[0] and base.get(kind) else ""
            parts.append(f"{kind} {rate:.1f} tok/s{ratio}")
        print(f"  {label:5s} " + "   ".join(parts))
    if args.png and comparison is not None:
        bench.plot(comparison, args.png)
        print(f"chart: {args.png}")


def _runs(t: bench.Throughput | None) -> str:
    return "-" if t is None else ", ".join(f"{rate:.1f}" for rate in t.rates) + " tok/s"


if __name__ == "__main__":
    main()
