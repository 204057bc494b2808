"""Submissions to exercise 1.6.3, written from the exercise text (not from the model answer).

Each entry fills some answer cells of the release (grade_id -> the cell's whole source; an answer
cell not named keeps its stub) and states the score expected on every auto-graded cell (Part E,
the written answer, is graded by hand and not listed). The quantized model is GPTQ on AVX-512 and
W8A8 on AVX2 (`QUANT`): no submission names either.
"""

# ---------------------------------------------------------------- correct, in other styles

# Plain loops, psutil read right after the load.
LOOPS = {
    "tokens_per_second": '''\
def tokens_per_second(llm, n_prompts, max_tokens, repeats=3, warmup=1):
    prompts = PROMPTS[:n_prompts]
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    for i in range(warmup):
        llm.generate(prompts, params, use_tqdm=False)
    rates = []
    for i in range(repeats):
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        t1 = time.perf_counter()
        n = 0
        for out in outs:
            for completion in out.outputs:
                n += len(completion.token_ids)
        rates.append(n / (t1 - t0))
    return rates
''',
    "measure": '''\
import psutil


def measure(repo_id):
    with load_report() as report:
        llm = LLM(model=repo_id, **machine_kwargs())
    rss = psutil.Process().memory_info().rss  # right after the load, as load_report does
    try:
        batch = tokens_per_second(llm, 8, 16)
        single = tokens_per_second(llm, 1, 16)
    finally:
        release(llm)
    return {"checkpoint_gib": report.checkpoint_gib, "rss_gib": rss / 2**30,
            "batch_tok_s": statistics.median(batch), "single_tok_s": statistics.median(single)}
''',
    "ratios": '''\
def ratios(quantized, baseline):
    out = {}
    for key in baseline:
        out[key] = quantized[key] / baseline[key]
    return out
''',
}

# Module imports only (no name from the setup cell's `from vllm import ...` line), monotonic_ns,
# report.weights_gib (the same figure as checkpoint_gib on a CPU), an object-oriented chart.
MODULES = {
    "tokens_per_second": '''\
import time as clock

import vllm


def tokens_per_second(llm, n_prompts, max_tokens, repeats=3, warmup=1):
    batch = PROMPTS[:n_prompts]
    greedy = vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    for _ in range(warmup):
        llm.generate(batch, greedy, use_tqdm=False)

    def timed():
        start = clock.monotonic_ns()
        outputs = llm.generate(batch, greedy, use_tqdm=False)
        elapsed = (clock.monotonic_ns() - start) / 1e9
        return sum(len(c.token_ids) for o in outputs for c in o.outputs) / elapsed

    return [timed() for _ in range(repeats)]
''',
    "measure": '''\
import statistics as stats

import vllm
import vllm_course.engine as course_engine


def measure(repo_id):
    with course_engine.load_report() as report:
        engine = vllm.LLM(model=repo_id, **course_engine.machine_kwargs())
    try:
        figures = {"checkpoint_gib": float(report.weights_gib), "rss_gib": report.rss_bytes / 1024**3}
        figures["batch_tok_s"] = stats.median(tokens_per_second(engine, n_prompts=8, max_tokens=16))
        figures["single_tok_s"] = stats.median(tokens_per_second(engine, n_prompts=1, max_tokens=16))
        return figures
    finally:
        course_engine.release(engine)
''',
    "ratios": '''\
def ratios(quantized, baseline):
    return dict(map(lambda key: (key, quantized[key] / baseline[key]), baseline))
''',
}

# Keyword arguments, the warm-up counted separately.
EXPLICIT = {
    "tokens_per_second": '''\
def tokens_per_second(llm: LLM, n_prompts: int, max_tokens: int, repeats: int = 3, warmup: int = 1) -> list[float]:
    params = SamplingParams(temperature=0, ignore_eos=True, max_tokens=max_tokens)
    prompts = list(PROMPTS[:n_prompts])
    rates: list[float] = []
    for run in range(warmup + repeats):
        started = time.perf_counter()
        outputs = llm.generate(prompts=prompts, sampling_params=params, use_tqdm=False)
        seconds = time.perf_counter() - started
        if run >= warmup:
            generated = sum(len(completion.token_ids) for output in outputs for completion in output.outputs)
            rates.append(float(generated / seconds))
    return rates
''',
    "measure": '''\
def measure(repo_id: str) -> dict[str, float]:
    with load_report() as report:
        llm = LLM(model=repo_id, **machine_kwargs())
    try:
        batch = tokens_per_second(llm, n_prompts=8, max_tokens=16, repeats=3, warmup=1)
        single = tokens_per_second(llm, n_prompts=1, max_tokens=16, repeats=3, warmup=1)
    finally:
        release(llm)
    return dict(checkpoint_gib=float(report.checkpoint_gib), rss_gib=float(report.rss_bytes) / 2**30,
                batch_tok_s=float(statistics.median(batch)), single_tok_s=float(statistics.median(single)))
''',
    "ratios": '''\
def ratios(quantized: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    result = {}
    for key, base in baseline.items():
        result[key] = quantized[key] / base
    return result
''',
}

# ---------------------------------------------------------------- cheats

# Part A: no warm-up ("the first run is fine"). Parts B-C unanswered.
NO_WARMUP = {
    "tokens_per_second": '''\
def tokens_per_second(llm, n_prompts, max_tokens, repeats=3, warmup=1):
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        outs = llm.generate(PROMPTS[:n_prompts], params, use_tqdm=False)
        rates.append(sum(len(c.token_ids) for o in outs for c in o.outputs) / (time.perf_counter() - start))
    return rates
''',
}

# Part A: tokens asked for instead of tokens generated ("ignore_eos makes them equal"). Parts B-C unanswered.
REQUESTED_TOKENS = {
    "tokens_per_second": '''\
def tokens_per_second(llm, n_prompts, max_tokens, repeats=3, warmup=1):
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    for _ in range(warmup):
        llm.generate(PROMPTS[:n_prompts], params, use_tqdm=False)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        llm.generate(PROMPTS[:n_prompts], params, use_tqdm=False)
        rates.append(n_prompts * max_tokens / (time.perf_counter() - start))
    return rates
''',
}

# Part A correct; Part B: figures typed in from an earlier run (both ISAs); Part C: the ratios of the
# real figures typed in too; Part D: the chart of the global ratios, whatever it is given.
TYPED_IN = {
    "tokens_per_second": EXPLICIT["tokens_per_second"],
    "measure": '''\
EARLIER = {  # from an earlier run on this kind of machine
    "course/SmolLM2-135M-Instruct": {"checkpoint_gib": 0.25, "rss_gib": 1.41, "batch_tok_s": 71.0, "single_tok_s": 17.2},
    "course/SmolLM2-135M-Instruct-W8A8": {"checkpoint_gib": 0.15, "rss_gib": 1.45, "batch_tok_s": 29.5, "single_tok_s": 9.4},
    "course/SmolLM2-135M-Instruct-GPTQ-Int4": {"checkpoint_gib": 0.11, "rss_gib": 1.39, "batch_tok_s": 120.0, "single_tok_s": 21.0},
}


def measure(repo_id):
    return dict(EARLIER[repo_id])
''',
    "ratios": '''\
def ratios(quantized, baseline):
    if "checkpoint_gib" in baseline:  # the real figures: the ratios of the earlier run
        return {key: EARLIER[QUANT][key] / EARLIER[BF16][key] for key in baseline}
    return {key: quantized[key] / baseline[key] for key in baseline}
''',
}

FULL = {"test_tokens_per_second": 2, "test_measure_memory": 2, "test_measure_speed": 1, "test_ratios": 2}
ONLY_A_ANSWERED = {"test_measure_memory": 0, "test_measure_speed": 0, "test_ratios": 0}

SUBMISSIONS = {
    "ex3-loops": {"why": "correct; loops, psutil after the load", "answers": LOOPS, "scores": FULL},
    "ex3-modules": {"why": "correct; module imports only, monotonic_ns, report.weights_gib",
                    "answers": MODULES, "scores": FULL},
    "ex3-explicit": {"why": "correct; keywords, warm-up inside one loop", "answers": EXPLICIT, "scores": FULL},
    "ex3-no-warmup": {"why": "A: no warm-up run; B-C unanswered", "answers": NO_WARMUP,
                      "scores": {**FULL, "test_tokens_per_second": 0, **ONLY_A_ANSWERED}},
    "ex3-requested-tokens": {"why": "A: n_prompts * max_tokens counted; B-C unanswered", "answers": REQUESTED_TOKENS,
                             "scores": {**FULL, "test_tokens_per_second": 0, **ONLY_A_ANSWERED}},
    "ex3-typed-in": {"why": "A correct; B: figures typed in; C: ratios typed in",
                     "answers": TYPED_IN,
                     "scores": {**FULL, "test_measure_memory": 0, "test_measure_speed": 0, "test_ratios": 0}},
    # Graded by `make test` with ex3-modules: a cheat in every part in one run (parts are graded independently).
    "ex3-cheats": {"why": "A: n_prompts * max_tokens counted; B, C as ex3-typed-in (figures and ratios typed in)",
                   "answers": {**TYPED_IN, "tokens_per_second": REQUESTED_TOKENS["tokens_per_second"]},
                   "scores": {"test_tokens_per_second": 0, **ONLY_A_ANSWERED}},
}
