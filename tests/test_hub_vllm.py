"""Real vLLM (CPU build) loading the course model through the course hub, as lesson 1.6 does:
first load downloads the weights once, the second downloads none, and with the hub stopped and
HF_HUB_OFFLINE=1 the model still loads from the cache.

Each load runs in its own interpreter: HF_ENDPOINT / HF_HUB_OFFLINE are read when vLLM imports
huggingface_hub, and a fresh process is the honest "second load"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_fixtures import client_env, course_hub  # noqa: F401
from vllm_course import config, hub

pytestmark = pytest.mark.slow

MODEL = config.BASE_MODEL
LOAD_SCRIPT = f"""
import json

if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    from vllm_course.machine import best_dtype  # float32 on AVX2, float16 with AMX, else the model's

    llm = LLM(model={MODEL!r}, enforce_eager=True, **({{"dtype": best_dtype()}} if best_dtype() else {{}}))
    chat = [{{"role": "user", "content": "What is the capital of France?"}}]
    out = llm.chat(chat, SamplingParams(temperature=0, max_tokens=20), use_tqdm=False)
    print(json.dumps({{"text": out[0].outputs[0].text}}))
"""


def load(scratch: Path, endpoint: str, offline: bool = False) -> str:
    """Load the course model with vLLM in a fresh process; return its greedy answer."""
    script = scratch / "load_model.py"
    script.write_text(LOAD_SCRIPT, encoding="utf-8")
    env = client_env(scratch / "hf", endpoint)
    env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_NUM_OF_RESERVED_CPU="0",
               VLLM_LOGGING_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=scratch)
    assert done.returncode == 0, f"vLLM load failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])["text"]


@pytest.fixture(scope="module")
def first_load(course_hub: tuple[hub.HubHandle, Path]) -> tuple[str, hub.HubStats]:
    handle, scratch = course_hub
    handle.reset_stats()
    return load(scratch, handle.url), handle.stats()


class TestLoadThroughTheHub:
    def test_does_the_first_load_answer_paris_after_one_weight_download(self, first_load):
        """Does LLM(model="course/SmolLM2-135M-Instruct") through the hub answer Paris, having
        downloaded model.safetensors exactly once (plus a ranged header read)?"""
        answer, stats = first_load
        assert "Paris" in answer, answer
        weights = stats.file(MODEL, "model.safetensors")
        assert weights.full_downloads == 1
        assert stats.weight_downloads() == 1

    def test_does_the_second_load_download_no_weights(self, course_hub, first_load):
        """In a new process with the same cache, does the load cost zero full weight downloads
        (only metadata and small ranged reads) per the hub's log?"""
        handle, scratch = course_hub
        handle.reset_stats()
        answer = load(scratch, handle.url)
        stats = handle.stats()
        assert "Paris" in answer, answer
        assert stats.weight_downloads() == 0
        assert stats.full_downloads == 0
        assert stats.bytes_sent < 1_000_000, f"{stats.bytes_sent} bytes sent for a cached model"

    def test_does_an_offline_load_work_with_the_hub_stopped(self, course_hub, first_load):
        """With the hub stopped and HF_HUB_OFFLINE=1, does vLLM load the model from the cache?"""
        handle, scratch = course_hub
        handle.stop()
        assert not hub.is_running(handle.url)
        assert "Paris" in load(scratch, handle.url, offline=True)
