"""The course hub never serves anything outside its root, only answers GET/HEAD, listens on loopback
by default, and refuses to start on a missing root."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from hub_fixtures import SECRET, TINY, hub_root, make_tiny_repo, tiny_hub  # noqa: F401
from vllm_course import config, hub
from vllm_course.errors import HubError
from vllm_course.hub.repos import RepoNotFound, validate_repo_id


def raw_get(url: str, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send `target` byte for byte (no client-side normalisation); return (status, whole response)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hub.HubHandle, Path]]:
    """One hub for the module, over a root with a secret just outside it and symlinks leading
    out of it (a file, and a whole repo folder). Yields (hub, secret file)."""
    base = tmp_path_factory.mktemp("jail")
    root = base / "root"
    make_tiny_repo(root)
    secret = base / "secret.txt"
    secret.write_bytes(SECRET)
    (root / TINY / "leak.txt").symlink_to(secret)
    outside = base / "outside-repo"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "org" / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_COURSE_HOME", str(base / "course-home"))
        with hub.start(root=root, port=0) as handle:
            yield handle, secret


TRAVERSALS = [
    "/org/tiny/resolve/main/../../../../secret.txt",
    "/org/tiny/resolve/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "/org/tiny/resolve/main/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/org/tiny/resolve/main/..%2f..%2f..%2f..%2fsecret.txt",
    "/org/tiny/resolve/main/..%5c..%5c..%5c..%5csecret.txt",
    "/org/tiny/resolve/main/extra/../../../../secret.txt",
    "/org/%2e%2e/resolve/main/secret.txt",
    "/%2e%2e/%2e%2e/resolve/main/secret.txt",
    "/org/tiny%2F..%2F..%2F../resolve/main/secret.txt",
    "/../../secret.txt",
    "/..%2F..%2Fsecret.txt",
    "/org/tiny/resolve/main/leak.txt",
    "/org/linked/resolve/main/secret.txt",
    "/org/tiny/resolve/main/.hidden",
    "/org/tiny/resolve/main/%2ehidden",
    "/org/tiny/resolve/main/secret.txt%00.json",
    "/api/models/org/tiny/tree/main/..%2F..%2F..",
    "/api/models/org/linked",
    "/api/models/..%2F../tiny",
]


class TestTraversal:
    @pytest.mark.parametrize("target", TRAVERSALS)
    def test_is_each_escape_refused_without_leaking(self, jail, target):
        """Is every traversal variant a 4xx whose answer never contains the secret bytes?"""
        status, data = raw_get(jail[0].url, target)
        assert 400 <= status < 500, f"{target} answered {status}"
        assert SECRET not in data

    def test_is_an_absolute_path_refused(self, jail):
        """Does asking for the secret by its absolute path (`resolve/main//tmp/...`) give a 4xx?"""
        handle, secret = jail
        for target in (f"/org/tiny/resolve/main/{secret}", f"/org/tiny/resolve/main/{str(secret).replace('/', '%2F')}"):
            status, data = raw_get(handle.url, target)
            assert 400 <= status < 500 and SECRET not in data, target

    def test_are_escaping_symlinks_never_listed(self, jail):
        """Do model info and the recursive tree leave out the symlink that leads outside the root?"""
        with httpx.Client(base_url=jail[0].url, trust_env=False) as client:
            siblings = [s["rfilename"] for s in client.get(f"/api/models/{TINY}").json()["siblings"]]
            tree = [e["path"] for e in client.get(f"/api/models/{TINY}/tree/main?recursive=true").json()]
        assert "leak.txt" not in siblings and "leak.txt" not in tree and ".hidden" not in tree

    def test_does_a_symlink_inside_the_root_still_work(self, tiny_hub, hub_root):
        """Is a symlink that stays inside the root (a shared weight file) served normally?"""
        (hub_root / TINY / "alias.json").symlink_to(hub_root / TINY / "config.json")
        with httpx.Client(base_url=tiny_hub.url, trust_env=False) as client:
            response = client.get(f"/{TINY}/resolve/main/alias.json")
        assert response.content == (hub_root / TINY / "config.json").read_bytes()


class TestRepoIds:
    @pytest.mark.parametrize("repo_id", ["org", "a/b/c", "../x", "org/..", "org/.hidden", ".org/x", "org/x y",
                                         "org/a..b", "org/", "/x", "org/x%2F", "org\\x/y"])
    def test_is_a_malformed_repo_id_not_found(self, repo_id):
        """Is every id that is not `org/name` with [A-Za-z0-9._-] (and no `..`) rejected?"""
        with pytest.raises(RepoNotFound):
            validate_repo_id(repo_id)

    def test_is_a_good_repo_id_accepted(self):
        """Are ids like the course's accepted as they are?"""
        assert validate_repo_id("course/SmolLM2-135M-Instruct_v1.0") == "course/SmolLM2-135M-Instruct_v1.0"


class TestMethods:
    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    @pytest.mark.parametrize("target", [f"/{TINY}/resolve/main/config.json", f"/api/models/{TINY}", "/_course/stats"])
    def test_is_anything_but_get_and_head_405(self, jail, method, target):
        """Does every other method get 405 (and change nothing)?"""
        status, _ = raw_get(jail[0].url, target, method)
        assert status == 405


class TestStartup:
    def test_does_a_missing_root_fail_loudly_naming_it(self, tmp_path, course_home):
        """Does start() on a missing root raise HubError naming the folder, before any process starts?"""
        missing = tmp_path / "no-such-root"
        with pytest.raises(HubError, match="no-such-root"):
            hub.start(root=missing, port=0)

    def test_does_serve_on_a_missing_root_exit_with_the_folder_named(self, tmp_path):
        """Does the hub's own process (`hub serve`, what start() launches) exit non-zero and name the folder
        when the root is missing?"""
        done = subprocess.run([sys.executable, "-m", "vllm_course", "hub", "serve", "--port", "0",
                               "--root", str(tmp_path / "gone")], capture_output=True, text=True, timeout=30)
        assert done.returncode != 0
        assert str(tmp_path / "gone") in done.stderr

    def test_does_the_hub_listen_on_loopback_only_by_default(self, tiny_hub):
        """Is the default host 127.0.0.1, and is the hub's listening socket bound to it?"""
        assert hub.HubConfig(root=Path(".")).host == "127.0.0.1"
        assert config.HUB_HOST == os.environ.get("VLLM_COURSE_HUB_HOST", "127.0.0.1")
        listening = [c for c in psutil.Process(tiny_hub.pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.ip for c in listening] == ["127.0.0.1"]


def test_does_hf_auth_login_accept_only_a_token_a_gated_repo_lists(tmp_path: Path, course_home: Path):
    """`hf auth login --token` asks /api/whoami-v2 first: a token from a .gated file logs in (and then
    downloads the gated repo without HF_TOKEN), any other token is refused with the Hub's 401 message."""
    from hub_fixtures import client_env, download_file

    root = tmp_path / "root"
    gated = make_tiny_repo(root, "org/gated")
    (gated / ".gated").write_text("# tokens allowed to download\nhf_course_login_token\n", encoding="utf-8")
    hf_bin = str(Path(sys.executable).with_name("hf"))
    with hub.start(root=root, port=0) as handle:
        env = client_env(tmp_path / "hf", handle.url)
        wrong = subprocess.run([hf_bin, "auth", "login", "--token", "hf_not_this_one"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode != 0 and "Invalid user token" in wrong.stdout + wrong.stderr, wrong.stderr[-2000:]
        assert not (tmp_path / "hf" / "token").exists()
        right = subprocess.run([hf_bin, "auth", "login", "--token", "hf_course_login_token"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert right.returncode == 0, right.stderr[-2000:]
        assert (tmp_path / "hf" / "token").read_text().strip() == "hf_course_login_token"
        who = subprocess.run([hf_bin, "auth", "whoami"], env=env, capture_output=True, text=True, timeout=60)
        assert "course-learner" in who.stdout, who.stdout + who.stderr
        env.pop("HF_HUB_DISABLE_IMPLICIT_TOKEN")  # let the client send the stored token, as on a learner's machine
        assert download_file(env, "config.json", repo_id="org/gated").is_file()
