"""Faults during a download or a load, provoked for real: the hub process killed mid-transfer, the
disk filling up mid-download (a real tmpfs), and a real SIGINT in the middle of `LLM(...)`.

What each checks: a clean one-line error where there is one, a consistent cache afterwards (no
half file in `snapshots/`, no broken link, partial data only ever as `blobs/*.incomplete`), and
that the next try works and gives the right bytes.

Not repeated here (tests/test_hub_clients.py covers them): a transfer the hub *cuts* mid-file
resuming within the same call (`TestInterruptedDownloads`), a *client* killed mid-file leaving a
prunable orphan, and two processes downloading the same repo at once (`TestConcurrentDownloads`).
"""

from __future__ import annotations

import re

import pytest

import faultlab as fl
from vllm_course import config, engine
from vllm_course.build import require


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    """The lab's hub root (course repos hard-linked, BIG = 16 MB of weights), shared by the tests."""
    require(config.BASE_MODEL)
    return fl.build_root(tmp_path_factory.mktemp("fault-root"))


def assert_consistent(layout: dict, *, weights_cached: bool) -> None:
    """No half file where a load would look, partial data only as blobs/*.incomplete."""
    assert layout["broken_links"] == []
    assert layout["incomplete_in_snapshots"] == []
    assert ("model.safetensors" in layout["snapshot_files"]) is weights_cached


class TestHubDiesMidDownload:
    def test_does_a_hub_back_within_seconds_let_the_same_call_resume(self, root, tmp_path):
        """The hub process is SIGKILLed mid-weights and restarted on the same port at once: does the
        running download resume with a Range request (not from zero) and end with the right bytes?"""
        found = fl.hub_dies_mid_download(root, tmp_path, comes_back=True)
        assert found["first"].ok, found["first"]
        assert found["blob_sha256"] == found["source_sha256"]
        assert (found["stats"].full_downloads, found["stats"].ranged_reads) == (0, 1)
        start = int(re.fullmatch(r"bytes=(\d+)-", found["ranges"][0]).group(1))
        assert 2 << 20 <= start < 16_000_000, "it resumed from what it had, not from zero"
        assert_consistent(found["layout"], weights_cached=True)
        assert found["layout"]["incomplete_blobs"] == []

    def test_does_a_hub_that_stays_down_fail_cleanly_and_the_next_try_start_over(self, root, tmp_path):
        """The hub dies and stays down: does the download fail with one line of advice, leave no half
        file anywhere, and does the next try (hub back) fetch the whole file with the right sha256?"""
        found = fl.hub_dies_mid_download(root, tmp_path, comes_back=False)
        first = found["first"]
        assert first.type == "HubUnreachableError", first
        assert re.fullmatch(
            re.escape("HF_ENDPOINT=http://127.0.0.1:") + r"\d+" + re.escape(
                " stopped answering while course/tiny-16mb was downloading (connection refused): no partial file "
                "was kept; start the course hub (`python -m vllm_course hub start`), then run it again (it starts "
                "over: huggingface_hub 2.4 resumes only within one call)."), first.message), first.message
        assert first.cause == "ConnectError"
        assert_consistent(found["layout_after_first"], weights_cached=False)
        assert found["layout_after_first"]["incomplete_blobs"] == [], "2.4 deletes its temporary file on failure"
        assert found["second"].ok, found["second"]
        assert (found["stats"].full_downloads, found["stats"].ranged_reads) == (1, 0)
        assert found["blob_sha256"] == found["source_sha256"]
        assert_consistent(found["layout"], weights_cached=True)


class TestDiskFillsDuringDownload:
    def test_does_a_full_disk_give_advice_and_leave_a_consistent_cache(self, root, tmp_path):
        """HF_HOME on a real 24 MB tmpfs that another writer fills mid-download: one line of advice,
        no half file in snapshots/, and after freeing space does the retry give the right bytes?"""
        try:
            found = fl.disk_fills_during_download(root, tmp_path)
        except fl.MountError as exc:
            pytest.skip(f"needs a real small filesystem: {exc} (run as root, or where tmpfs mounts are allowed)")
        first = found["first"]
        assert first.type == "InsufficientDiskSpaceError", first
        assert re.fullmatch(re.escape("The disk of ") + r"/\S+/filling-disk/hf/hub" + re.escape(
            " filled up while downloading course/tiny-16mb (No space left on device): free space "
            "(lesson 08's clean-up, or `hf cache prune`) or set HF_HUB_CACHE to a bigger disk before "
            "importing huggingface_hub, then download again."), first.message), first.message
        assert first.cause == "OSError"
        layout = found["layout_after_first"]
        assert_consistent(layout, weights_cached=False)
        assert all(name.endswith(".incomplete") for name in layout["incomplete_blobs"])
        assert found["second"].ok, found["second"]
        assert found["blob_sha256"] == found["source_sha256"]
        assert_consistent(found["layout"], weights_cached=True)
        assert found["layout"]["incomplete_blobs"] == []


@pytest.mark.slow
class TestInterruptDuringLoad:
    def test_is_an_interrupted_engine_released_and_the_next_load_fine(self, tmp_path):
        """A real SIGINT while vLLM allocates the KV cache (Jupyter then keeps the traceback): is the
        half-built engine freed (no live LLMEngine, no process group, RSS back near where it was),
        and does a second load in the same process answer?

        Without the release, measured: one LLMEngine stays alive through the kept traceback, vLLM's
        process groups stay initialised, and +0.66 GiB RSS stays (+1.7 GiB when it lands later)."""
        outcome = fl.interrupt_during_load(tmp_path)
        assert outcome.ok, outcome
        found = outcome.result
        assert found["interrupted"], "the SIGINT landed after the load had finished"
        assert found["notes"] == ["vllm_course: the interrupted load was released; the next load starts clean."]
        assert found["live_engines"] == 0
        assert found["process_groups_left"] is False
        # bf16 weights: +0.45 GiB at most. Where machine_kwargs() computes in float32 (AVX2 CPUs) the
        # weights take 0.25 GiB more in memory (measured: +0.52 GiB with the release; a leaked engine
        # holds that plus the +0.66 GiB measured in bf16).
        extra = 0.25 if engine.machine_kwargs().get("dtype") == "float32" else 0.0
        assert found["rss_growth_gib"] < 0.45 + extra
        assert "Paris" in found["answer"]
