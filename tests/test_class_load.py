"""A class's load on the course hub: 20 learners `snapshot_download` the course model through one
mirror hub, 10 at a time, while the mirror's root starts empty and its upstream is a second hub.

The hubs and clients are benchmarks/bench_class_load.py's own `measure()` (loaded from its file):
the benchmark and this test run one piece of code, and a benchmark never imports tests/. Only
correctness is asserted (the right bytes, one upstream GET per file, no error), never time: the
figures are the benchmark's. Not covered: the real Hub as upstream, clients on other machines.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vllm_course import config

CLIENTS, CONCURRENCY = 20, 10
_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_class_load.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_class_load", _BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def class_load(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> bench.ClassLoad:
    """One run: 20 clients through a mirror of a hub serving the built course repos (hub state files
    in a scratch course home)."""
    repos = base_model.parents[1]  # <course home>/repos, read before the home moves
    scratch = tmp_path_factory.mktemp("class-load")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_COURSE_HOME", str(scratch / "course-home"))
        return bench.measure(repos, config.BASE_MODEL, CLIENTS, CONCURRENCY, scratch / "work")


class TestTwentyLearnersThroughOneMirror:
    def test_did_every_client_finish_without_error(self, class_load):
        """Did all 20 snapshot_downloads return, did neither hub answer any request with an error, and
        does neither hub's log hold an exception?"""
        assert [c.error for c in class_load.errors] == []
        assert len(class_load.clients) == CLIENTS
        assert (class_load.mirror.errors, class_load.upstream.errors) == (0, 0)
        assert class_load.hub_log_errors == {"mirror": {}, "upstream": {}}

    def test_did_every_client_get_every_file_with_the_upstreams_sha256(self, class_load):
        """Does each client's snapshot hold exactly the upstream's files, each with its sha256?"""
        assert "model.safetensors" in class_load.expected
        for client in class_load.clients:
            assert client.hashes == class_load.expected, f"client {client.index} got other files or bytes"

    def test_did_the_upstream_send_each_file_exactly_once(self, class_load):
        """In the upstream hub's own log: one GET per file for 20 clients, and the mirror counted one
        upstream fetch per file?"""
        assert class_load.upstream_gets() == {path: 1 for path in class_load.expected}
        fetched = {p: class_load.mirror.file(config.BASE_MODEL, p).upstream_fetches for p in class_load.expected}
        assert fetched == {path: 1 for path in class_load.expected}

    def test_does_the_mirrors_log_show_20_snapshot_downloads(self, class_load):
        """Did the mirror answer 20 whole-file GETs of every file (one per client, no ranged reads)?"""
        assert class_load.mirror_gets() == {path: CLIENTS for path in class_load.expected}
        assert class_load.mirror.full_downloads == CLIENTS * len(class_load.expected)
