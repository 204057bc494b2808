"""HubStats.since(): what a hub served between two snapshots (the lessons' per-repo deltas)."""

from __future__ import annotations

import httpx
import pytest

from vllm_course import hub
from vllm_course.errors import HubError
from vllm_course.hub.log import RequestLog, RequestRecord

REPO, OTHER = "org/tiny", "org/other"


def _record(t: float, kind: str, repo: str = REPO, file: str | None = "model.safetensors", size: int = 0):
    status = 206 if kind == "range" else 200
    return RequestRecord(t, "HEAD" if kind == "head" else "GET", f"/{repo}/x", status, kind, repo, file, None, size)


class TestDeltaArithmetic:
    def test_do_only_the_requests_after_the_snapshot_count(self):
        """After one full download before the snapshot and one after, is the delta exactly one?"""
        log = RequestLog()
        log.add(_record(1.0, "download", size=100))
        before = log.snapshot()
        log.add(_record(2.0, "head"))
        log.add(_record(3.0, "download", size=100))
        log.add(_record(4.0, "metadata", file=None))
        delta = log.snapshot().since(before)
        assert delta.weight_downloads() == 1
        assert (delta.heads, delta.bytes_sent, delta.metadata, delta.requests) == (1, 100, {REPO: 1}, 3)
        assert [r.time for r in delta.recent] == [2.0, 3.0, 4.0]

    def test_are_untouched_files_and_other_repos_left_out(self):
        """Does a file nobody asked for in between vanish from the delta, per repo too?"""
        log = RequestLog()
        log.add(_record(1.0, "download", repo=OTHER, file="config.json"))
        before = log.snapshot()
        log.add(_record(2.0, "range", size=10))
        delta = log.snapshot().since(before)
        assert [(f.repo_id, f.path, f.ranged_reads) for f in delta.files] == [(REPO, "model.safetensors", 1)]
        assert delta.for_repo(OTHER).files == ()
        assert delta.for_repo(REPO).ranged_reads == 1

    def test_does_a_reset_in_between_raise_a_one_line_error(self):
        """If the counters went down (hub reset), does since() refuse instead of going negative?"""
        log = RequestLog()
        log.add(_record(1.0, "download"))
        before = log.snapshot()
        log.reset()
        with pytest.raises(HubError, match=r"^the hub's counters went down .*take the earlier snapshot again\.$"):
            log.snapshot().since(before)


class TestRealHub:
    def test_does_a_real_hub_count_one_download_between_snapshots(self, tmp_path):
        """Against a real course hub, does one GET of a weight file between snapshots give 1?"""
        repo = tmp_path / REPO
        repo.mkdir(parents=True)
        (repo / "config.json").write_text("{}")
        (repo / "model.safetensors").write_bytes(b"\0" * 4096)
        with hub.start(root=tmp_path, port=0) as running:
            httpx.get(f"{running.url}/{REPO}/resolve/main/config.json", trust_env=False).raise_for_status()
            before = running.stats()
            got = httpx.get(f"{running.url}/{REPO}/resolve/main/model.safetensors", trust_env=False)
            delta = running.stats().since(before).for_repo(REPO)
        assert got.status_code == 200
        assert delta.weight_downloads() == 1
        assert [(f.path, f.full_downloads, f.bytes_sent) for f in delta.files] == [("model.safetensors", 1, 4096)]
