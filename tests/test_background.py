"""Do the background build's status, lock and wait work as `make lab` and lesson 06 rely on?

Each test gets its own empty course home; the lock is held by a real second process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from vllm_course import background, build, config
from vllm_course.errors import ModelNotBuiltError

# A second process that holds the build lock, as a running `models build` does, for N seconds.
_HOLD_LOCK = """
import fcntl, sys, time
from vllm_course import build
path = build.build_lock_path()
path.parent.mkdir(parents=True, exist_ok=True)
with path.open("w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def _hold_lock(seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _record_built(repo_id: str) -> None:
    """Write a repo folder and its manifest entry the way `build_all` records a finished build."""
    folder = config.repo_path(repo_id)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    manifest_path = config.repos_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[repo_id] = {"recipe": build.RECIPE_VERSION, "files": {"config.json": "x"},
                         "provenance": {"sizes": {"config.json": 2}}}
    manifest_path.write_text(json.dumps(manifest))


class TestNothingBuilt:
    def test_does_wait_for_say_how_to_build_when_no_build_runs(self, course_home):
        """No repo, no build running: does wait_for fail at once, naming the repo and `make models`?"""
        with pytest.raises(ModelNotBuiltError) as info:
            background.wait_for(config.GPTQ_MODEL)
        assert str(info.value) == (f"{config.GPTQ_MODEL} is not built and no build is running: run `make models` in a "
                                   "terminal (GPTQ and AWQ take a few minutes each), then run this cell again.")

    def test_does_status_list_every_repo_as_not_built(self, course_home):
        """Does `models status` (the CLI) show each course repo and that no background build runs?"""
        out = subprocess.run([sys.executable, "-m", "vllm_course", "models", "status"], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "VLLM_COURSE_HOME": str(course_home)}).stdout
        lines = out.splitlines()
        assert [l.split()[0] for l in lines[:-1]] == list(background.ALL_REPOS)
        assert lines[_index(config.BASE_MODEL)].endswith("not built: `make models`")
        assert lines[-1] == "background build: not running"


def _index(repo_id: str) -> int:
    return background.ALL_REPOS.index(repo_id)


class TestQuickBuild:
    def test_does_status_show_every_quick_repo_as_built(self, base_model):
        """After `models build --quick`, does `models status` show each repo it built, the sharded one too, as built?"""
        built = [repo.repo_id for repo in build.build_all(quick=True, log=lambda line: None)]
        assert config.SHARDED_MODEL in built
        rows = dict(line.split(maxsplit=1) for line in background.status().splitlines()[:-1])
        assert {repo_id: rows.get(repo_id) for repo_id in built} == dict.fromkeys(built, "built")


class TestBuildRunning:
    def test_is_a_held_lock_seen_as_a_running_build(self, course_home):
        """While another process holds the build lock, is a build running; after it exits, not?"""
        proc = _hold_lock(30)
        try:
            assert build.build_running()
            assert "building" in background.status().splitlines()[_index(config.GPTQ_MODEL)]
        finally:
            proc.kill()
            proc.wait()
        assert not build.build_running()

    def test_does_wait_for_return_once_the_repo_is_built(self, course_home):
        """A build holds the lock and records the repo 2 s later: does wait_for return its folder?"""
        proc = _hold_lock(30)
        try:
            start = time.monotonic()
            timer = threading.Timer(2.0, _record_built, [config.GPTQ_MODEL])
            timer.start()
            assert background.wait_for(config.GPTQ_MODEL, timeout=60) == config.repo_path(config.GPTQ_MODEL)
            assert time.monotonic() - start >= 2.0
        finally:
            proc.kill()
            proc.wait()

    def test_does_wait_for_fail_when_the_build_stops_without_the_repo(self, course_home):
        """The build ends (lock released) and the repo never came: does wait_for say to read the log?"""
        proc = _hold_lock(2)
        with pytest.raises(ModelNotBuiltError, match="the background build stopped before"):
            background.wait_for(config.GPTQ_MODEL, timeout=60)
        proc.wait()
