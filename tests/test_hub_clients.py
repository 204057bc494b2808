"""Real clients against the course hub: huggingface_hub's Python API and the `hf` CLI, each run in a
fresh interpreter with its own HF_HOME (no mocks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub_fixtures import (  # noqa: F401
    HF_CLI, SNAPSHOT_CODE, TINY, client_env, download_file, hf_env, hub_root, make_tiny_repo, run_py, sha256_of,
    tiny_hub,
)
from vllm_course import hub
from vllm_course.errors import HubError
from vllm_course.hub.cli import _request_line


VERIFY_CACHE = """
import hashlib, json, os
from huggingface_hub import scan_cache_dir
info = scan_cache_dir()
repo = next(r for r in info.repos if r.repo_id == "org/tiny")
files = {}
for rev in repo.revisions:
    for f in rev.files:
        name = f.file_path.relative_to(rev.snapshot_path).as_posix()
        files[name] = hashlib.sha256(f.blob_path.read_bytes()).hexdigest()
blobs = os.listdir(repo.repo_path / "blobs")
print(json.dumps({"revisions": [r.commit_hash for r in repo.revisions], "files": files, "blobs": blobs,
                  "warnings": [str(w) for w in info.warnings]}))
"""


def _expected_hashes(root: Path) -> dict[str, str]:
    folder = root / TINY
    return {p.relative_to(folder).as_posix(): sha256_of(p) for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


class TestSnapshotDownload:
    def test_does_snapshot_download_fetch_every_visible_file_intact(self, tiny_hub, hf_env, hub_root):
        """Does snapshot_download get each visible file once, byte-identical, under the hub's sha?"""
        path = Path(run_py(SNAPSHOT_CODE, hf_env)["path"])
        stats = tiny_hub.stats()
        cached = run_py(VERIFY_CACHE, hf_env)
        assert cached["files"] == _expected_hashes(hub_root)
        assert not (path / ".hidden").exists()
        assert cached["revisions"] == [path.name] and cached["warnings"] == []
        assert stats.full_downloads == 3 and stats.weight_downloads() == 1

    def test_does_a_second_download_fetch_nothing(self, tiny_hub, hf_env):
        """After one snapshot_download, does a second one (new process, same cache) download no file?"""
        run_py(SNAPSHOT_CODE, hf_env)
        tiny_hub.reset_stats()
        run_py(SNAPSHOT_CODE, hf_env)
        stats = tiny_hub.stats()
        assert (stats.full_downloads, stats.bytes_sent) == (0, 0)
        assert stats.metadata_requests >= 1

    def test_does_hf_hub_download_place_the_file_in_the_snapshot(self, tiny_hub, hf_env, hub_root):
        """Does hf_hub_download return snapshots/<sha>/extra/notes.txt with the right bytes?"""
        path = download_file(hf_env, "extra/notes.txt")
        sha = httpx.get(f"{tiny_hub.url}/api/models/{TINY}", trust_env=False).json()["sha"]
        assert path.parts[-4:] == ("snapshots", sha, "extra", "notes.txt")
        assert path.read_bytes() == (hub_root / TINY / "extra" / "notes.txt").read_bytes()


class TestErrors:
    def test_does_each_missing_thing_raise_the_right_hub_error(self, hf_env):
        """Do a missing repo, revision and file raise RepositoryNotFound, RevisionNotFound, EntryNotFound?"""
        code = """
import json
from huggingface_hub import hf_hub_download
out = {}
for name, kwargs in {"repo": dict(repo_id="org/none", filename="config.json"),
                     "revision": dict(repo_id="org/tiny", filename="config.json", revision="v2"),
                     "file": dict(repo_id="org/tiny", filename="none.json")}.items():
    try:
        hf_hub_download(**kwargs)
    except Exception as exc:
        out[name] = [c.__name__ for c in type(exc).__mro__]
print(json.dumps(out))
"""
        out = run_py(code, hf_env)
        assert "RepositoryNotFoundError" in out["repo"]
        assert "RevisionNotFoundError" in out["revision"]
        assert "EntryNotFoundError" in out["file"]

    def test_does_a_gated_repo_raise_gated_repo_error_and_open_with_its_token(self, tiny_hub, hf_env, hub_root):
        """Does hf_hub_download raise GatedRepoError on a gated repo, and succeed with a listed token?"""
        (make_tiny_repo(hub_root, "org/gated") / ".gated").write_text("hf_course_token\n", encoding="utf-8")
        code = """
import json
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import GatedRepoError
try:
    hf_hub_download("org/gated", "config.json")
    refused = False
except GatedRepoError:
    refused = True
path = hf_hub_download("org/gated", "config.json", token="hf_course_token")
print(json.dumps({"refused": refused, "path": path}))
"""
        out = run_py(code, hf_env)
        assert out["refused"] is True
        assert Path(out["path"]).is_file()


class TestHfCli:
    def test_does_hf_download_then_cache_ls_and_verify_show_the_repo(self, tiny_hub, hf_env):
        """Does `hf download org/tiny` succeed, `hf cache ls` list it, `hf cache verify` match checksums?"""
        run = lambda *args: subprocess.run([HF_CLI, *args], env=hf_env, capture_output=True, text=True, timeout=120)
        download = run("download", TINY)
        assert download.returncode == 0, download.stderr
        listing = run("cache", "ls")
        assert listing.returncode == 0 and "model/org/tiny" in listing.stdout, listing.stdout
        verify = run("cache", "verify", TINY)
        assert verify.returncode == 0 and "All checksums match" in verify.stdout, verify.stdout + verify.stderr
        assert tiny_hub.stats().full_downloads == 3

    def test_does_hf_get_the_agent_registry_it_asks_for_and_keep_it(self, tiny_hub, hf_env):
        """Does the `hf` CLI's `GET /api/agent-harnesses` get a 200 the client stores in HF_HOME (so a
        second command does not ask again), with no error in the log or in `hub watch`'s line?"""
        run = lambda *args: subprocess.run([HF_CLI, *args], env=hf_env, capture_output=True, text=True, timeout=120)
        for name in ("config.json", "extra/notes.txt"):
            done = run("download", TINY, name)
            assert done.returncode == 0, done.stderr
        stats = tiny_hub.stats()
        asked = [r for r in stats.recent if r.path == "/api/agent-harnesses"]
        assert [(r.method, r.status, r.kind) for r in asked] == [("GET", 200, "metadata")]
        assert stats.errors == 0
        stored = json.loads((Path(hf_env["HF_HOME"]) / ".agent_harnesses.json").read_text())
        assert stored == {"standardEnvVars": ["AI_AGENT", "AGENT"], "harnesses": {}}
        assert re.search(r"GET  200 metadata +/api/agent-harnesses$", _request_line(asked[0]))


class TestActivation:
    def test_does_use_hub_redirect_an_already_imported_huggingface_hub(self, tiny_hub, tmp_path):
        """With huggingface_hub imported before HF_ENDPOINT is set, does use_hub() still route
        model_info, list_repo_tree, hf_hub_download and snapshot_download to the hub, and restore?"""
        code = f"""
import json, os
import huggingface_hub
from huggingface_hub import constants, hf_hub_download, list_repo_tree, model_info, snapshot_download
from vllm_course import hub
before = constants.ENDPOINT
with hub.use_hub({tiny_hub.url!r}):
    sha = model_info("org/tiny").sha
    tree = sorted(e.path for e in list_repo_tree("org/tiny", recursive=True))
    one = hf_hub_download("org/tiny", "config.json")
    snap = snapshot_download("org/tiny")
    inside = os.environ["HF_ENDPOINT"]
print(json.dumps({{"before": before, "after": constants.ENDPOINT, "env": os.environ.get("HF_ENDPOINT"),
                  "inside": inside, "sha": sha, "tree": tree, "snap": snap}}))
"""
        out = run_py(code, client_env(tmp_path / "hf", None))
        assert out["before"] == out["after"] == "https://huggingface.co"
        assert out["env"] is None and out["inside"] == tiny_hub.url
        assert out["snap"].endswith(out["sha"])
        assert "extra/notes.txt" in out["tree"]
        assert tiny_hub.stats().full_downloads == 3


class TestInterruptedDownloads:
    """huggingface_hub 2.4 resumes a cut transfer *within one call* (it retries with a Range header
    from the last full 10 MiB chunk it wrote), but a process that dies mid-file leaves only an
    orphan `<etag>.<random>.incomplete`: the next process downloads the whole file again."""

    def test_does_a_transfer_cut_mid_file_resume_with_a_range_request(self, hub_root, course_home, tmp_path):
        """When the hub cuts the first transfer after 12 MiB, does the same call resume with
        `Range: bytes=10485760-` (its first 10 MiB chunk kept), and is the blob's sha256 right?"""
        make_tiny_repo(hub_root, weight_floats=4_000_000)  # 16 MB of weights
        with hub.start(root=hub_root, port=0, cut_after_bytes=12 << 20) as h:
            path = download_file(client_env(tmp_path / "hf", h.url), "model.safetensors")
            stats = h.stats()
        assert sha256_of(path) == sha256_of(hub_root / TINY / "model.safetensors")
        weights = stats.file(TINY, "model.safetensors")
        assert (weights.full_downloads, weights.ranged_reads) == (1, 1)
        assert [r.range for r in stats.recent if r.kind == "range"] == [f"bytes={10 << 20}-"]
        assert weights.bytes_sent == (12 << 20) + (hub_root / TINY / "model.safetensors").stat().st_size - (10 << 20)

    def test_does_a_killed_download_restart_and_leave_a_prunable_orphan(self, hub_root, course_home, tmp_path):
        """If the downloading process is killed mid-file, does the next process download the whole
        file again (no resume across processes in 2.4), end with the right blob, and does
        `hf cache prune` remove the orphan .incomplete file?"""
        make_tiny_repo(hub_root, weight_floats=1_000_000)  # 4 MB, sent at 2 MB/s
        with hub.start(root=hub_root, port=0, throttle_bps=2_000_000) as h:
            env = client_env(tmp_path / "hf", h.url)
            code = "from huggingface_hub import hf_hub_download; hf_hub_download('org/tiny', 'model.safetensors')"
            first = subprocess.Popen([sys.executable, "-c", code], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            blobs = tmp_path / "hf" / "hub" / "models--org--tiny" / "blobs"
            deadline = time.monotonic() + 30
            while not (blobs.is_dir() and list(blobs.glob("*.incomplete"))) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            first.kill()
            first.wait()
            orphans = list(blobs.glob("*.incomplete"))
            assert orphans, "the first download never started"
            while not h.stats().file(TINY, "model.safetensors").full_downloads and time.monotonic() < deadline:
                time.sleep(0.05)  # the hub logs the cut transfer once it notices the client is gone
            assert h.reset_stats().file(TINY, "model.safetensors").full_downloads == 1
            path = download_file(env, "model.safetensors")
            weights = h.stats().file(TINY, "model.safetensors")
        assert sha256_of(path) == sha256_of(hub_root / TINY / "model.safetensors")
        assert (weights.full_downloads, weights.ranged_reads) == (1, 0)
        assert all(p.exists() for p in orphans)
        prune = subprocess.run([HF_CLI, "cache", "prune", "--yes"], env=env, capture_output=True, text=True, timeout=60)
        assert prune.returncode == 0, prune.stderr
        assert not list(blobs.glob("*.incomplete"))
        assert path.is_file()


class TestConcurrentDownloads:
    def test_do_two_processes_at_once_leave_one_consistent_cache(self, hub_root, course_home, tmp_path):
        """Two snapshot_downloads of the same repo into one cache at the same time: do both succeed,
        with one revision, one blob per file, no leftovers, and every blob's sha256 right?"""
        make_tiny_repo(hub_root, weight_floats=500_000)
        with hub.start(root=hub_root, port=0, throttle_bps=4_000_000) as h:
            env = client_env(tmp_path / "hf", h.url)
            procs = [subprocess.Popen([sys.executable, "-c", SNAPSHOT_CODE], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
            results = [p.communicate(timeout=120) for p in procs]
            stats = h.stats()
        assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
        cached = run_py(VERIFY_CACHE, env)
        assert cached["files"] == _expected_hashes(hub_root)
        assert len(cached["revisions"]) == 1 and cached["warnings"] == []
        assert len(cached["blobs"]) == 3 and not any(b.endswith(".incomplete") for b in cached["blobs"])
        assert stats.weight_downloads() == 1, "the file lock should make the second process wait, not re-download"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestStartStop:
    def test_does_the_cli_start_reuse_report_and_stop_a_background_hub(self, hub_root, course_home):
        """Does `hub start` leave a hub running with a state file, a second `start` (CLI or Python)
        reuse it, `hub status` report it, and `hub stop` end it?"""
        port = str(_free_port())
        cli = lambda *args: subprocess.run([sys.executable, "-m", "vllm_course", "hub", *args], capture_output=True,
                                           text=True, timeout=60)
        started = cli("start", "--root", str(hub_root), "--port", port)
        try:
            assert started.returncode == 0, started.stderr
            assert f"http://127.0.0.1:{port}" in started.stdout
            state = course_home / "hub" / f"{port}.json"
            assert state.is_file()
            assert "already running" in cli("start", "--root", str(hub_root), "--port", port).stdout
            reused = hub.start(root=hub_root, port=int(port))
            assert reused.owned is False and reused.pid == json.loads(state.read_text())["pid"]
            with pytest.raises(HubError, match="already runs on port"):
                hub.start(root=hub_root.parent, port=int(port))
            status = cli("status")
            assert status.returncode == 0 and "running" in status.stdout
        finally:
            stopped = cli("stop", "--port", port)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert not hub.is_running(int(port)) and not state.exists()
        assert cli("status").returncode == 1

    def test_does_a_free_port_hub_end_with_the_process_that_started_it(self, hub_root, course_home):
        """Does a private hub (port=0) stop by itself once its kernel/script is gone, leaving no orphan?"""
        code = (f"import json; from vllm_course import hub; h = hub.start(root={str(hub_root)!r}, port=0); "
                "print(json.dumps({'url': h.url}))")
        url = run_py(code, dict(os.environ))["url"]
        deadline = time.monotonic() + 10
        while hub.is_running(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not hub.is_running(url)

    def test_does_the_cli_refuse_a_missing_root_naming_it(self, tmp_path, course_home):
        """Does `hub start --root <missing>` exit 1 with an error that names the folder?"""
        done = subprocess.run([sys.executable, "-m", "vllm_course", "hub", "start", "--root", str(tmp_path / "nope"),
                               "--port", str(_free_port())], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert str(tmp_path / "nope") in done.stderr

    def test_does_check_endpoint_fail_fast_on_a_stopped_hub(self, monkeypatch):
        """With HF_ENDPOINT at a local port where nothing listens, does check_endpoint raise
        HubUnreachableError in well under the ~100 s huggingface_hub would spend retrying?"""
        from vllm_course.errors import HubUnreachableError

        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        start = time.monotonic()
        with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE=1"):
            hub.check_endpoint()
        assert time.monotonic() - start < 5
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        hub.check_endpoint()  # offline: nothing to check


class TestWatch:
    def test_does_hub_watch_print_each_request_as_it_happens(self, tiny_hub, hf_env):
        """Does `hub watch` print the HEAD and the full download of a file fetched while it runs, and only those?"""
        download_file(hf_env, "config.json")  # before the watch: must not be printed
        watch = subprocess.Popen([sys.executable, "-m", "vllm_course", "hub", "watch", "--port", str(tiny_hub.port),
                                  "--seconds", "4", "--interval", "0.2"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert watch.stdout.readline().startswith("watching the course hub")
            download_file(hf_env, "model.safetensors")
            out, err = watch.communicate(timeout=60)
        finally:
            watch.kill()
        assert watch.returncode == 0, err
        lines = out.splitlines()
        assert any(re.search(r"HEAD 200 head +org/tiny  model\.safetensors$", line) for line in lines), out
        assert any(re.search(r"GET  200 download +org/tiny  model\.safetensors  \d+ B$", line) for line in lines), out
        assert not any("config.json" in line for line in lines), out

    def test_does_hub_watch_say_when_no_hub_answers(self, course_home):
        """Does `hub watch` on a port where nothing listens end at once with a one-line error?"""
        done = subprocess.run([sys.executable, "-m", "vllm_course", "hub", "watch", "--port", "9"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:"), done.stderr
