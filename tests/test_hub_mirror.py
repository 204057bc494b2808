"""Mirror mode: a course hub started with `upstream=` fetches each file from the upstream once,
keeps it under its own root, and keeps serving it when the upstream is gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hub_fixtures import SNAPSHOT_CODE, TINY, client_env, hub_root, make_tiny_repo, run_py, sha256_of  # noqa: F401
from vllm_course import hub


@pytest.fixture()
def upstream(hub_root: Path, course_home: Path) -> Iterator[hub.HubHandle]:
    """The hub to mirror: a course hub serving `org/tiny`."""
    with hub.start(root=hub_root, port=0) as handle:
        yield handle


@pytest.fixture()
def mirror_root(tmp_path: Path) -> Path:
    root = tmp_path / "mirror-root"
    root.mkdir()
    return root


def _download(tmp_path: Path, name: str, endpoint: str) -> Path:
    return Path(run_py(SNAPSHOT_CODE, client_env(tmp_path / name, endpoint))["path"])


def _hub_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vllm_course", "hub", *map(str, args)], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))


@contextmanager
def _hub_serve(root: Path, upstream_url: str, ready: Path) -> Iterator[str]:
    """`python -m vllm_course hub serve --root R --upstream URL` in the foreground of a child process, as a
    user types it (on a free port); yield its URL, then stop it."""
    args = ["--root", root, "--port", 0, "--upstream", upstream_url, "--ready-file", ready, "--exit-with-parent"]
    child = subprocess.Popen([sys.executable, "-m", "vllm_course", "hub", "serve", *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"`hub serve` did not start ({child.poll()}):\n{child.stdout.read() if child.poll() is not None else ''}"
        url = f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
        while not hub.is_running(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield url
    finally:
        child.terminate()
        child.wait(10)


class TestPullThrough:
    def test_does_the_first_download_fetch_each_file_from_upstream_once(self, upstream, mirror_root, hub_root,
                                                                         tmp_path):
        """Through the mirror, does a snapshot arrive intact, with the upstream's sha, each file fetched
        from upstream exactly once and stored under the mirror's root?"""
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            path = _download(tmp_path, "hf1", mirror.url)
            stats = mirror.stats()
        upstream_sha = httpx.get(f"{upstream.url}/api/models/{TINY}", trust_env=False).json()["sha"]
        assert path.name == upstream_sha
        assert stats.upstream_fetches == 3 and stats.full_downloads == 3
        assert upstream.stats().full_downloads == 3
        for name in ("config.json", "model.safetensors", "extra/notes.txt"):
            assert sha256_of(mirror_root / TINY / name) == sha256_of(hub_root / TINY / name)
            assert (path / name).read_bytes() == (hub_root / TINY / name).read_bytes()
        manifest = json.loads((mirror_root / TINY / ".mirror" / "manifest.json").read_text())
        assert manifest["sha"] == upstream_sha

    def test_does_a_second_client_get_everything_without_touching_upstream(self, upstream, mirror_root, tmp_path):
        """After one client went through the mirror, does a second (fresh cache) cost the upstream no file?"""
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            _download(tmp_path, "hf1", mirror.url)
            upstream.reset_stats()
            _download(tmp_path, "hf2", mirror.url)
            stats = mirror.stats()
        assert upstream.stats().full_downloads == 0
        assert stats.full_downloads == 6 and stats.upstream_fetches == 3

    def test_does_the_mirror_keep_serving_with_the_upstream_down(self, upstream, mirror_root, tmp_path):
        """With the upstream stopped, does a restarted mirror (still pointed at it) serve from its cache,
        and does a hub with no upstream at all serve the mirrored repo too?"""
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            first = _download(tmp_path, "hf1", mirror.url)
        dead = upstream.url
        upstream.stop()
        with hub.start(root=mirror_root, port=0, upstream=dead) as mirror:
            again = _download(tmp_path, "hf2", mirror.url)
            assert mirror.stats().upstream_fetches == 0
        with hub.start(root=mirror_root, port=0) as plain:
            third = _download(tmp_path, "hf3", plain.url)
        assert first.name == again.name == third.name
        assert (again / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()

    def test_is_a_changed_upstream_file_fetched_again(self, upstream, mirror_root, hub_root, tmp_path):
        """When the upstream's main moves (a file changed), does the mirror follow it after its refresh?"""
        from vllm_course.hub import mirror as mirror_module

        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            _download(tmp_path, "hf1", mirror.url)
        (hub_root / TINY / "config.json").write_text('{"model_type": "changed"}', encoding="utf-8")
        # a fresh mirror process has no "recently checked" memory, so it asks the upstream again
        assert mirror_module.REFRESH_SECONDS > 0
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            path = _download(tmp_path, "hf2", mirror.url)
            assert mirror.stats().file(TINY, "config.json").upstream_fetches == 1
        assert json.loads((path / "config.json").read_text())["model_type"] == "changed"


class TestManyFirstRequestsAtOnce:
    def test_do_concurrent_first_requests_cost_the_upstream_one_listing(self, upstream, mirror_root):
        """When 20 clients ask a cold mirror for the repo at the same moment (a class starting a lesson),
        do all get the upstream's sha, with one listing asked of the upstream (model info and tree)?"""
        from concurrent.futures import ThreadPoolExecutor

        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            with ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(lambda _: httpx.get(f"{mirror.url}/api/models/{TINY}", trust_env=False,
                                                            timeout=30), range(20)))
        upstream_sha = httpx.get(f"{upstream.url}/api/models/{TINY}", trust_env=False).json()["sha"]
        assert [(a.status_code, a.json()["sha"]) for a in answers] == [(200, upstream_sha)] * 20
        assert upstream.stats().metadata == {TINY: 3}  # revision/main and tree for the mirror, then ours


class TestMissingMirrorRoot:
    def test_does_hub_serve_create_a_missing_root_and_serve_through_it(self, upstream, hub_root, tmp_path):
        """Does `hub serve --upstream URL --root R`, with neither R nor its parent there yet, create R, give
        a client the upstream's files and keep them under R?"""
        root = tmp_path / "not-yet" / "mirror-root"
        with _hub_serve(root, upstream.url, tmp_path / "ready.json") as url:
            path = _download(tmp_path, "hf1", url)
        for name in ("config.json", "model.safetensors", "extra/notes.txt"):
            assert sha256_of(path / name) == sha256_of(hub_root / TINY / name)
            assert sha256_of(root / TINY / name) == sha256_of(hub_root / TINY / name)

    def test_does_hub_start_create_it_too(self, upstream, course_home, tmp_path):
        """Does the background form, `hub start --upstream URL --root R`, create a missing R as well?"""
        root = tmp_path / "not-yet" / "mirror-root"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        started = _hub_cli("start", "--root", root, "--upstream", upstream.url, "--port", port)
        try:
            assert started.returncode == 0, started.stderr
            assert hub.stats(port).requests == 0 and root.is_dir()
        finally:
            hub.stop(port)

    def test_is_a_root_that_cannot_be_created_a_clear_error(self, upstream, tmp_path):
        """With a file where the root should be, does `hub serve` exit 1 naming the folder and --root?"""
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder", encoding="utf-8")
        done = _hub_cli("serve", "--root", blocker / "mirror", "--port", 0, "--upstream", upstream.url)
        assert done.returncode == 1
        assert done.stderr.startswith(f"error: Cannot create the mirror's root folder {str(blocker / 'mirror')!r}: ")
        assert done.stderr.rstrip().endswith("Pass a writable folder as --root.")


class TestMirrorErrors:
    def test_is_an_unknown_repo_upstream_not_found_here_either(self, upstream, mirror_root):
        """Does the mirror pass on the upstream's 404 RepoNotFound (and create no folder for it)?"""
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            response = httpx.get(f"{mirror.url}/api/models/org/none", trust_env=False)
        assert (response.status_code, response.headers["X-Error-Code"]) == (404, "RepoNotFound")
        assert not (mirror_root / "org" / "none").exists()

    def test_does_an_unreachable_upstream_with_nothing_cached_say_so(self, mirror_root, course_home):
        """With the upstream down and nothing mirrored yet, is the answer a 502 naming the problem?"""
        with hub.start(root=mirror_root, port=0, upstream="http://127.0.0.1:9") as mirror:
            response = httpx.get(f"{mirror.url}/api/models/{TINY}", trust_env=False)
        assert response.status_code == 502
        assert "upstream" in response.json()["error"]

    def test_is_a_gated_upstream_file_refused_though_the_hub_holds_a_token(self, upstream, hub_root, mirror_root,
                                                                          monkeypatch):
        """Does the mirror fetch with no token (not even the HF_TOKEN of its own process), so that a gated
        upstream file is refused to its clients as the upstream refuses it, and never fetched?"""
        (make_tiny_repo(hub_root, "org/gated") / ".gated").write_text("hf_course_token\n", encoding="utf-8")
        monkeypatch.setenv("HF_TOKEN", "hf_course_token")  # the mirror's process inherits it
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            response = httpx.get(f"{mirror.url}/org/gated/resolve/main/config.json", trust_env=False)
            assert mirror.stats().upstream_fetches == 0
        assert (response.status_code, response.headers["X-Error-Code"]) == (403, "GatedRepo")
        assert upstream.stats().file("org/gated", "config.json").full_downloads == 0

    def test_does_a_local_repo_take_precedence_over_upstream(self, upstream, mirror_root, tmp_path):
        """Is a repo that exists as a plain folder in the mirror's root served as is, never fetched?"""
        make_tiny_repo(mirror_root, seed=7)
        with hub.start(root=mirror_root, port=0, upstream=upstream.url) as mirror:
            path = _download(tmp_path, "hf1", mirror.url)
            assert mirror.stats().upstream_fetches == 0
        assert (path / "model.safetensors").read_bytes() == (mirror_root / TINY / "model.safetensors").read_bytes()
        assert upstream.stats().requests == 0
