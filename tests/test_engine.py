"""Real vLLM (CPU build) loads of every course variant, in-process as the lessons do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import greedy_answer
from hub_fixtures import client_env, course_hub  # noqa: F401
from vllm_course import config, diagnose, engine, formats, hub, machine
from vllm_course.errors import WeightFormatError

pytestmark = pytest.mark.slow


class TestBf16Model:
    def test_does_the_course_model_answer_paris(self, vllm_engines, base_model):
        """Does the converted bf16 model answer the capital question with Paris (greedy)?"""
        llm, report = vllm_engines(base_model)
        assert "Paris" in greedy_answer(llm)
        vllm_engines.release_all()

    def test_does_the_report_parse_vllms_own_log(self, vllm_engines, base_model):
        """Does the load report carry vLLM's checkpoint size (0.25 GiB) and a positive time?"""
        _, report = vllm_engines(base_model)
        vllm_engines.release_all()
        assert report.device == "cpu"
        assert report.checkpoint_gib == pytest.approx(0.25, abs=0.01)
        assert report.weights_seconds is not None and report.weights_seconds >= 0
        assert 0 < report.seconds < 300
        assert formats.inspect_folder(base_model).picks("auto") == ("model.safetensors",)  # the course's model of vLLM
        assert any("Checkpoint size" in line for line in report.highlights)


class TestLoadFormats:
    def test_does_auto_load_pytorch_model_bin(self, vllm_engines, bin_model):
        """Does load_format='auto' fall back to pytorch_model.bin when there is no safetensors?"""
        llm, report = vllm_engines(bin_model, load_format="auto")
        assert "Paris" in greedy_answer(llm)
        assert formats.inspect_folder(bin_model).picks("auto") == ("pytorch_model.bin",)
        vllm_engines.release_all()

    def test_does_pt_on_a_bin_repo_say_which_files_are_there(self, bin_model):
        """Does load_format='pt' on a .bin-only folder fail, and the advice name the .bin file?"""
        from vllm import LLM

        with pytest.raises(RuntimeError, match="Cannot find any model weights") as info:
            with engine.load_report(str(bin_model)):
                LLM(model=str(bin_model), **engine.machine_kwargs(load_format="pt"))
        advice = diagnose.explain(info.value, model=str(bin_model), load_format="pt")
        assert isinstance(advice, WeightFormatError)
        message = str(advice)
        assert "load_format='pt' reads *.pt" in message
        assert "pytorch_model.bin" in message
        assert "\n" not in message

    def test_does_vllm_itself_refuse_pt_on_a_bin_repo(self, vllm_engines, bin_model):
        """Without the helper's pre-check, does vLLM really fail (the fact the lesson teaches)?"""
        from vllm import LLM

        with pytest.raises(Exception, match="Cannot find any model weights"):
            with engine.load_report(str(bin_model)):
                LLM(model=str(bin_model), load_format="pt", **engine.machine_kwargs())

    def test_does_pt_load_model_pt(self, vllm_engines, pt_model):
        """Does load_format='pt' load the model.pt variant and answer?"""
        llm, report = vllm_engines(pt_model, load_format="pt")
        assert "Paris" in greedy_answer(llm)
        assert formats.inspect_folder(pt_model).picks("pt") == ("model.pt",)
        vllm_engines.release_all()


class TestQuantized:
    @pytest.mark.parametrize("fixture, method", [("gptq_model", "gptq"), ("awq_model", "awq")])
    def test_is_the_method_detected_from_config_and_the_answer_sensible(self, vllm_engines, request, quant, fixture, method):
        """Where vLLM has a 4-bit kernel: does each 4-bit repo load auto-detected and answer sensibly?"""
        if not quant.w4a16:
            pytest.skip(f"{quant.isa} ({quant.library}): no W4A16 kernel; "
                        "test_does_4bit_fail_at_the_first_forward_without_the_kernel covers this ISA")
        llm, report = vllm_engines(request.getfixturevalue(fixture))
        answer, used = greedy_answer(llm), llm.llm_engine.model_config.quantization
        vllm_engines.release_all()
        assert machine.quant_family(used) == method, used  # vLLM's own choice from config.json (auto_gptq on CPU)
        assert "Paris" in answer or "France" in answer, answer
        assert report.checkpoint_gib is not None and report.checkpoint_gib < 0.2

    def test_does_4bit_fail_at_the_first_forward_without_the_kernel(self, vllm_engines, quant, gptq_model):
        """Where the probe says no W4A16 kernel: does GPTQ load, then fail at its first forward as the probe said?"""
        if quant.w4a16:
            pytest.skip(f"{quant.isa} ({quant.library}) has the W4A16 kernel: the 4-bit models run here "
                        "(test_is_the_method_detected_from_config_and_the_answer_sensible)")
        llm, report = vllm_engines(gptq_model, dtype="bfloat16")
        assert machine.quant_family(llm.llm_engine.model_config.quantization) == "gptq"
        with pytest.raises(AttributeError, match="cpu_gemm_wna16"):
            greedy_answer(llm)
        vllm_engines.release_all()

    def test_does_the_w8a8_model_load_and_answer(self, vllm_engines, quant, w8a8_model):
        """Does the int8 W8A8 build load (compressed-tensors, from config.json), answer Paris, in the chosen dtype?"""
        assert quant.w8a8, quant.why_w8a8
        wanted = machine.w8a8_dtype()
        llm, report = vllm_engines(w8a8_model, **({"dtype": wanted} if wanted else {}))
        answer = greedy_answer(llm)
        dtype, used = str(llm.llm_engine.model_config.dtype), llm.llm_engine.model_config.quantization
        vllm_engines.release_all()
        assert used == "compressed-tensors"
        assert "Paris" in answer, answer
        assert report.checkpoint_gib is not None and 0.1 < report.checkpoint_gib < 0.2
        assert dtype == ("torch.float32" if quant.isa == "AVX2" else "torch.bfloat16")


class TestRelease:
    def test_do_three_load_release_cycles_keep_memory_flat(self, base_model):
        """After three load/release cycles, has RSS grown by less than 0.5 GiB over the first?"""
        after = []
        from vllm import LLM

        for _ in range(3):
            with engine.load_report():
                llm = LLM(model=str(base_model), **engine.machine_kwargs())
            engine.release(llm)
            del llm
            after.append(engine.rss_bytes())
        assert after[2] - after[0] < 0.5 * 2**30, [a / 2**30 for a in after]


def perplexity(llm, max_tokens: int = 1024) -> float:
    """exp(mean negative log-probability) of each token of a held-out text given the ones before it, from
    vLLM's own prompt log-probabilities. The text: the docstrings of json, csv, argparse and logging,
    prose none of the course's quantizers calibrated on (they used `pydoc_data.topics`)."""
    import argparse
    import csv
    import logging
    import math

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    text = "\n\n".join(" ".join(m.__doc__.split()) for m in (json, csv, argparse, logging) if (m.__doc__ or "").strip())
    ids = llm.get_tokenizer()(text)["input_ids"][:max_tokens]
    out = llm.generate(TokensPrompt(prompt_token_ids=ids), SamplingParams(max_tokens=1, prompt_logprobs=0),
                       use_tqdm=False)[0]
    logprobs = [entry[token].logprob for token, entry in zip(ids[1:], out.prompt_logprobs[1:])]
    return math.exp(-sum(logprobs) / len(logprobs))


class TestQuality:
    def test_do_the_quantized_models_keep_the_perplexity_close_to_bf16(self, vllm_engines, quant, base_model, w8a8_model):
        """On a held-out text, is W8A8 within 10 % of bf16's perplexity (and GPTQ within 60 % where it runs)?"""
        scores = {}
        models = {"bf16": base_model, "W8A8": w8a8_model}
        if quant.w4a16:
            from vllm_course import config

            models["GPTQ"] = config.repos_dir() / config.GPTQ_MODEL
        for label, folder in models.items():
            w8a8 = machine.w8a8_dtype() if label == "W8A8" else None
            llm, _ = vllm_engines(folder, **({"dtype": w8a8} if w8a8 else {}))
            scores[label] = perplexity(llm)
            vllm_engines.release_all()
        assert 5 < scores["bf16"] < 60, scores
        assert scores["W8A8"] < 1.10 * scores["bf16"], scores
        if "GPTQ" in scores:
            assert scores["GPTQ"] < 1.60 * scores["bf16"], scores


# A learner's load, as the lessons write it, in a fresh interpreter (HF_HUB_OFFLINE is read at import).
_TAUGHT_SCRIPT = f"""
import json

if __name__ == "__main__":
    from vllm import LLM
    from vllm_course.engine import load_report, machine_kwargs, release

    with load_report() as report:
        llm = LLM(model={config.BASE_MODEL!r}, **machine_kwargs())
    release(llm)
    print("REPORT " + json.dumps({{"shown": report.vllm_log, "log": list(report.log)}}))
"""
# vLLM INFO lines of every load that teach nothing here: they must stay out of the console and the report.
_NOISE = ("Unknown vLLM environment variable", "Chunked prefill is enabled", "libtcmalloc is not found",
          "CPU KV cache size", "world_size=1 rank=0")


def _learner_load(scratch: Path, endpoint: str, offline: bool) -> tuple[dict, str]:
    """Run the lesson's load in a fresh process; return the report's shown/log lines and the console output."""
    script = scratch / "load.py"
    script.write_text(_TAUGHT_SCRIPT, encoding="utf-8")
    env = client_env(scratch / "hf", endpoint) | ({"HF_HUB_OFFLINE": "1"} if offline else {})
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=scratch)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT ")), done.stdout.replace(line, "") + done.stderr


# vLLM logs "Time spent downloading weights" only when the download took over 0.5 s (weight_utils.py):
# a local hub on a fast machine sends the 0.25 GiB sooner. This hub paces each file at 100 MB/s (~2.7 s).
_PACE_BPS = 100_000_000


@pytest.fixture(scope="module")
def first_load(course_hub: tuple[hub.HubHandle, Path]) -> tuple[dict, str]:
    """The lesson's first load into an empty cache, through a second hub over the same repos, paced."""
    handle, scratch = course_hub
    with hub.start(root=handle.root, port=0, throttle_bps=_PACE_BPS) as paced:
        found, console = _learner_load(scratch, paced.url, offline=False)
        assert paced.stats().file(config.BASE_MODEL, "model.safetensors").full_downloads == 1
    return found, console


def _shown_lines(found: dict) -> list[str]:
    head, *lines = found["shown"].splitlines()
    assert head == "vLLM's log, the lines about this load:"
    assert all(x.startswith("  ") for x in lines)
    return [x[2:] for x in lines]


class TestTaughtLogLines:
    def test_does_a_first_load_show_the_download_and_weights_lines_and_no_noise(self, first_load):
        """Through a paced hub into an empty cache: are vLLM's resolve, download and weights-loaded lines
        shown verbatim, and its other INFO lines kept off the console and out of the shown lines?"""
        found, console = first_load
        shown = _shown_lines(found)
        assert set(shown) <= set(found["log"])  # verbatim vLLM lines
        text = "\n".join(shown)
        assert "Resolved architecture: LlamaForCausalLM" in shown
        assert f"Starting to load model {config.BASE_MODEL}..." in shown
        assert f"Time spent downloading weights for {config.BASE_MODEL}: " in text
        assert "Checkpoint size: 0.25 GiB" in text and "Loading weights took " in text
        assert "HF_HUB_OFFLINE is True" not in text
        for noise in _NOISE:
            assert any(noise in x for x in found["log"]), f"vLLM no longer logs {noise!r}: update _NOISE"
            assert noise not in text and noise not in console, noise

    def test_does_an_offline_load_of_the_cached_repo_id_show_the_snapshot_swap(self, course_hub, first_load):
        """HF_HUB_OFFLINE=1, hub stopped, the repo id cached by the first load: is vLLM's line replacing the
        repo id with the cached snapshot folder shown, and no download line?"""
        handle, scratch = course_hub
        handle.stop()
        found, _ = _learner_load(scratch, handle.url, offline=True)
        shown = _shown_lines(found)
        snapshots = scratch / "hf" / "hub" / f"models--{config.BASE_MODEL.replace('/', '--')}" / "snapshots"
        (snapshot,) = snapshots.iterdir()
        swap = f"HF_HUB_OFFLINE is True, replace model_id [{config.BASE_MODEL}] to model_path [{snapshot}]"
        assert swap in shown, shown
        assert f"Starting to load model {snapshot}..." in shown
        assert not any("Time spent downloading" in x for x in shown)
