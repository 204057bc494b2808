"""The online profile end to end, with no internet: a second course hub stands in for the real Hub.

The upstream hub serves the built course model under the online id `Qwen/Qwen2.5-0.5B-Instruct`
(hard links to the same bytes). `setup("online")` then runs in a fresh interpreter (huggingface_hub
reads HF_* at import), as a notebook's first cell does, and the cells after it download through
the course hub (a logging mirror of that upstream) and through a lesson's private `hub.start(port=0)`.
vLLM is only imported by setup's kernel probe; no engine starts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub_fixtures import sha256_of
from vllm_course import config, hub

ONLINE_BASE = config.ONLINE_MODELS[config.BASE_MODEL]

# A notebook in the online profile: the first cell, a download, then a lesson's private hub.
_NOTEBOOK = r"""
import json, sys
from vllm_course.course import setup
course = setup("online")

from huggingface_hub import snapshot_download
from vllm_course import hub
first = snapshot_download(course.models.base)
lesson_hub = hub.start(port=0)          # as lessons 01/04/07 and exercises 1.6.1/1.6.2 do
lesson_hub.activate()
before = lesson_hub.stats()
second = snapshot_download(course.models.base, cache_dir=sys.argv[1])
seen = lesson_hub.stats().since(before)
course_hub = hub.stats()                # the profile's own hub, as lesson 02 asks for it
print(json.dumps({
    "printed": str(course), "endpoint": course.endpoint, "hf_home": str(course.hf_home),
    "base": course.models.base, "first": first, "second": second,
    "lesson_hub": {"root": str(lesson_hub.root), "upstream": lesson_hub.upstream,
                   "full": seen.full_downloads, "fetched": seen.upstream_fetches},
    "course_hub": {"full": course_hub.full_downloads, "fetched": course_hub.upstream_fetches},
}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture()
def upstream_root(tmp_path: Path, base_model: Path) -> Path:
    """An upstream root holding the course model's files under the online id (no dotfiles)."""
    repo = tmp_path / "upstream" / ONLINE_BASE
    repo.mkdir(parents=True)
    for src in base_model.iterdir():
        if src.is_file() and not src.name.startswith("."):
            _link_or_copy(src, repo / src.name)
    return tmp_path / "upstream"


@pytest.fixture()
def upstream(upstream_root: Path, course_home: Path) -> Iterator[hub.HubHandle]:
    """The stand-in for the real Hub: a plain course hub on a free port."""
    with hub.start(root=upstream_root, port=0) as handle:
        yield handle


@pytest.fixture()
def mirror_port(course_home: Path) -> Iterator[int]:
    """A free port for the profile's fixed-port mirror; the mirror is stopped afterwards."""
    port = _free_port()
    yield port
    hub.stop(port)  # state files live in the scratch course home, so this finds only our mirror


def _run_notebook(tmp_path: Path, course_home: Path, upstream_url: str, port: int) -> dict:
    learner_home = tmp_path / "learner-home"
    learner_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "VLLM_COURSE_"))}
    env.update(HOME=str(learner_home), VLLM_COURSE_HOME=str(course_home), VLLM_COURSE_UPSTREAM=upstream_url,
               VLLM_COURSE_MIRROR_PORT=str(port), HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_IMPLICIT_TOKEN="1")
    done = subprocess.run([sys.executable, "-c", _NOTEBOOK, str(tmp_path / "second-cache")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the online notebook failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


class TestOnlineProfileThroughAMirror:
    def test_does_a_notebook_get_the_upstreams_bytes_through_counting_course_hubs(
        self, upstream, upstream_root, mirror_port, course_home, tmp_path
    ):
        """With setup("online") and a stand-in upstream: do both downloads (the course hub, then a lesson's
        private hub) give the upstream's exact files, each fetched from the upstream once, with every
        request counted, and do the HF cache and the mirror's copies stay inside the course home?"""
        out = _run_notebook(tmp_path, course_home, upstream.url, mirror_port)
        files = sorted(p.name for p in (upstream_root / ONLINE_BASE).iterdir())
        expected = {name: sha256_of(upstream_root / ONLINE_BASE / name) for name in files}

        assert out["base"] == ONLINE_BASE
        assert out["endpoint"] == f"http://{config.HUB_HOST}:{mirror_port}"
        assert f"endpoint  http://{config.HUB_HOST}:{mirror_port} (mirror of {upstream.url})" in out["printed"]
        assert out["hf_home"] == str(course_home / "hf")
        for snapshot in (Path(out["first"]), Path(out["second"])):
            assert {p.name: sha256_of(p) for p in snapshot.iterdir()} == expected
        assert Path(out["first"]).is_relative_to(course_home / "hf")

        # the upstream served each file once in all: the second mirror read the first one's copies
        sent = upstream.stats()
        assert {name: sent.file(ONLINE_BASE, name).full_downloads for name in files} == dict.fromkeys(files, 1)
        assert out["course_hub"] == {"full": len(files), "fetched": len(files)}
        assert out["lesson_hub"] == {"root": str(config.mirror_dir()), "upstream": upstream.url,
                                     "full": len(files), "fetched": 0}
        kept = course_home / "mirror" / ONLINE_BASE
        assert {name: sha256_of(kept / name) for name in files} == expected
        assert not (tmp_path / "learner-home" / ".cache" / "huggingface").exists()


class TestHubStartFollowsTheProfile:
    def test_is_a_rootless_hub_a_mirror_online_and_a_hub_with_a_root_not(
        self, upstream, course_home, monkeypatch, tmp_path
    ):
        """Online, does `hub.start(port=0)` mirror VLLM_COURSE_UPSTREAM from a mirror folder it creates,
        while `hub.start(root=..., port=0)` (lessons 03, 05, 08) stays a plain hub of that folder?"""
        monkeypatch.setenv("VLLM_COURSE_PROFILE", "online")
        monkeypatch.setattr(config, "UPSTREAM", upstream.url)
        assert not config.mirror_dir().exists()
        with hub.start(port=0) as mirror:
            assert (mirror.root, mirror.upstream) == (config.mirror_dir(), upstream.url)
            assert httpx.get(f"{mirror.url}/_course/health", trust_env=False).json()["upstream"] == upstream.url
        own = tmp_path / "own-root"
        own.mkdir()
        with hub.start(root=own, port=0) as plain:
            assert (plain.root, plain.upstream) == (own, None)

    def test_does_hub_start_from_the_cli_start_the_online_mirror_on_its_own_port(
        self, upstream, course_home, mirror_port
    ):
        """With VLLM_COURSE_PROFILE=online (as `make lab` runs it), does `hub start` start the mirror on
        VLLM_COURSE_MIRROR_PORT, leaving the offline hub's port alone, and `hub stop` stop it?"""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VLLM_COURSE_"))}
        env.update(VLLM_COURSE_HOME=str(course_home), VLLM_COURSE_PROFILE="online",
                   VLLM_COURSE_UPSTREAM=upstream.url, VLLM_COURSE_MIRROR_PORT=str(mirror_port))

        def cli(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "vllm_course", "hub", *args], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout

        started = cli("start")
        assert f"course hub started: http://{config.HUB_HOST}:{mirror_port} (root {course_home / 'mirror'}," in started
        health = httpx.get(f"http://{config.HUB_HOST}:{mirror_port}/_course/health", trust_env=False).json()
        assert health["upstream"] == upstream.url
        assert cli("stop") == f"course hub on port {mirror_port} stopped\n"
        assert not hub.is_running(mirror_port)
