"""The course hub speaks the Hub protocol huggingface_hub 2.4 and vLLM 0.32 rely on (raw HTTP here;
real clients in test_hub_clients.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub.utils.sha import git_hash

from hub_fixtures import TINY, make_tiny_repo, sha256_of
from vllm_course import hub
from vllm_course.hub.repos import RepoStore, is_lfs, lfs_pointer


def _git_hash_object(data: bytes) -> str:
    done = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True)
    return done.stdout.decode().strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hub.HubHandle, Path]]:
    """One hub for this module (its tests only read), over org/tiny, other/model and a gated repo
    whose `.gated` file lists the one token allowed to download."""
    base = tmp_path_factory.mktemp("protocol")
    root = base / "root"
    make_tiny_repo(root)
    make_tiny_repo(root, "other/model")
    (make_tiny_repo(root, "org/gated") / ".gated").write_text("# tokens allowed to download\nhf_course_token\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_COURSE_HOME", str(base / "course-home"))
        with hub.start(root=root, port=0) as handle:
            yield handle, root


@pytest.fixture()
def tiny_hub(served) -> hub.HubHandle:
    """The module's hub, with its request counters reset for this test."""
    served[0].reset_stats()
    return served[0]


@pytest.fixture()
def hub_root(served) -> Path:
    return served[1]


@pytest.fixture()
def client(tiny_hub: hub.HubHandle):
    with httpx.Client(base_url=tiny_hub.url, trust_env=False) as c:
        yield c


class TestModelInfo:
    def test_does_model_info_list_visible_files_with_a_commit_sha(self, client):
        """Does /api/models/{repo} give id, a 40-hex sha, the visible siblings and gated=False?"""
        info = client.get(f"/api/models/{TINY}").json()
        assert info["id"] == TINY
        assert re.fullmatch(r"[0-9a-f]{40}", info["sha"])
        siblings = sorted(s["rfilename"] for s in info["siblings"])
        assert siblings == ["config.json", "extra/notes.txt", "model.safetensors"]
        assert info["gated"] is False
        assert info["config"]["model_type"] == "llama"

    def test_do_main_and_the_full_sha_resolve_to_the_same_commit(self, client):
        """Do /revision/main and /revision/<sha> answer the same sha, and an unknown revision 404?"""
        sha = client.get(f"/api/models/{TINY}/revision/main").json()["sha"]
        assert client.get(f"/api/models/{TINY}/revision/{sha}").json()["sha"] == sha
        missing = client.get(f"/api/models/{TINY}/revision/v9.9")
        assert missing.status_code == 404
        assert missing.headers["X-Error-Code"] == "RevisionNotFound"
        assert "error" in missing.json()

    def test_are_commit_shas_unique_per_repo_and_stable(self, client, hub_root):
        """Do two repos with identical files get different shas (as on the real Hub), each the same
        as a fresh scan of the folder computes, and is one repo's sha no revision of the other?"""
        tiny, other = (client.get(f"/api/models/{rid}").json()["sha"] for rid in (TINY, "other/model"))
        files = [{p.relative_to(hub_root / rid): sha256_of(p) for p in (hub_root / rid).rglob("*") if p.is_file()}
                 for rid in (TINY, "other/model")]
        assert files[0] == files[1]
        assert tiny != other
        assert (RepoStore(hub_root).view(TINY).sha, RepoStore(hub_root).view("other/model").sha) == (tiny, other)
        assert client.get(f"/api/models/{TINY}/revision/{other}").headers["X-Error-Code"] == "RevisionNotFound"

    def test_does_the_agent_registry_answer_what_huggingface_hub_reads(self, client, tiny_hub):
        """Does /api/agent-harnesses answer 200 with the registry shape `utils/_detect_agent.py` reads
        (standardEnvVars, harnesses), logged as a metadata request, not an error?"""
        response = client.get("/api/agent-harnesses")
        assert response.status_code == 200
        assert response.json() == {"standardEnvVars": ["AI_AGENT", "AGENT"], "harnesses": {}}
        stats = tiny_hub.stats()
        assert (stats.errors, [(r.path, r.kind) for r in stats.recent]) == (0, [("/api/agent-harnesses", "metadata")])

    def test_is_an_unknown_repo_a_json_404_with_repo_not_found(self, client):
        """Does an unknown repo give 404, X-Error-Code RepoNotFound and a JSON error body?"""
        response = client.get("/api/models/org/nothing-here")
        assert response.status_code == 404
        assert response.headers["X-Error-Code"] == "RepoNotFound"
        assert "org/nothing-here" in response.json()["error"]

    def test_do_siblings_carry_sizes_and_lfs_with_blobs(self, client, hub_root):
        """With ?blobs=true, do siblings carry size, blobId and lfs.sha256 for the weights?"""
        info = client.get(f"/api/models/{TINY}", params={"blobs": "true"}).json()
        weights = next(s for s in info["siblings"] if s["rfilename"] == "model.safetensors")
        assert weights["lfs"]["sha256"] == sha256_of(hub_root / TINY / "model.safetensors")
        assert weights["size"] == (hub_root / TINY / "model.safetensors").stat().st_size

    def test_does_the_model_list_filter_by_author(self, client):
        """Does /api/models?author=other list other/model only, and the full list every repo?"""
        ids = [m["id"] for m in client.get("/api/models", params={"author": "other"}).json()]
        assert ids == ["other/model"]
        assert [m["id"] for m in client.get("/api/models").json()] == ["org/gated", TINY, "other/model"]


class TestCommitSha:
    def test_do_the_same_files_give_the_same_sha_anywhere(self, tmp_path):
        """Do two copies of a repo (different folders, different mtimes) get the same commit sha?"""
        a = make_tiny_repo(tmp_path / "a")
        shutil.copytree(a, tmp_path / "b" / TINY)
        sha_a = RepoStore(tmp_path / "a").view(TINY).sha
        assert RepoStore(tmp_path / "b").view(TINY).sha == sha_a

    def test_does_changing_a_file_change_the_sha(self, tmp_path):
        """Does editing one file give a new commit sha (and the old sha stop resolving)?"""
        folder = make_tiny_repo(tmp_path)
        store = RepoStore(tmp_path)
        before = store.view(TINY).sha
        (folder / "config.json").write_text('{"model_type": "other"}', encoding="utf-8")
        after = store.view(TINY).sha
        assert after != before
        with pytest.raises(LookupError):
            store.view(TINY, before)

    def test_are_weights_and_big_files_lfs(self):
        """Are weight suffixes and anything over 10 MB LFS, and small text files not?"""
        assert is_lfs("model.safetensors", 10) and is_lfs("pytorch_model.bin", 10) and is_lfs("m.gguf", 10)
        assert is_lfs("tokenizer.json", 11 * 1024 * 1024)
        assert not is_lfs("config.json", 800)


class TestTree:
    def test_does_the_top_level_list_folders_and_files_but_not_hidden_ones(self, client):
        """Does tree/main list `extra` as a directory plus the top-level files, and no dotfiles?"""
        entries = client.get(f"/api/models/{TINY}/tree/main").json()
        assert {(e["type"], e["path"]) for e in entries} == {
            ("directory", "extra"), ("file", "config.json"), ("file", "model.safetensors")}

    def test_does_recursive_list_nested_files(self, client):
        """Does ?recursive=true reach extra/notes.txt, and tree/main/extra list only that folder?"""
        paths = {e["path"] for e in client.get(f"/api/models/{TINY}/tree/main", params={"recursive": "true"}).json()}
        assert "extra/notes.txt" in paths and ".hidden" not in paths
        inside = client.get(f"/api/models/{TINY}/tree/main/extra").json()
        assert [e["path"] for e in inside] == ["extra/notes.txt"]

    def test_are_oids_the_ones_git_would_compute(self, client, hub_root):
        """Is a text file's oid `git hash-object` of it, and a weight's oid that of its LFS pointer?"""
        entries = {e["path"]: e for e in client.get(f"/api/models/{TINY}/tree/main").json()}
        config = (hub_root / TINY / "config.json").read_bytes()
        assert entries["config.json"]["oid"] == _git_hash_object(config) == git_hash(config)
        assert "lfs" not in entries["config.json"]
        weights = hub_root / TINY / "model.safetensors"
        lfs = entries["model.safetensors"]["lfs"]
        pointer = lfs_pointer(sha256_of(weights), weights.stat().st_size)
        assert lfs == {"oid": sha256_of(weights), "size": weights.stat().st_size, "pointerSize": len(pointer)}
        assert entries["model.safetensors"]["oid"] == _git_hash_object(pointer)

    def test_does_expand_add_last_commit(self, client):
        """Does ?expand=true add lastCommit with the repo sha to each entry?"""
        sha = client.get(f"/api/models/{TINY}").json()["sha"]
        entries = client.get(f"/api/models/{TINY}/tree/main", params={"expand": "true"}).json()
        assert all(e["lastCommit"]["id"] == sha for e in entries)

    def test_is_a_missing_folder_entry_not_found(self, client):
        """Does tree/main/nope give 404 EntryNotFound?"""
        response = client.get(f"/api/models/{TINY}/tree/main/nope")
        assert (response.status_code, response.headers["X-Error-Code"]) == (404, "EntryNotFound")


class TestResolve:
    def test_does_head_on_a_weight_send_the_hub_headers(self, client, hub_root):
        """Does HEAD on a weight send X-Repo-Commit, quoted sha256 ETag, X-Linked-*, Content-Length, no xet?"""
        weights = hub_root / TINY / "model.safetensors"
        response = client.head(f"/{TINY}/resolve/main/model.safetensors")
        sha = client.get(f"/api/models/{TINY}").json()["sha"]
        assert response.status_code == 200
        assert response.headers["X-Repo-Commit"] == sha
        assert response.headers["ETag"] == f'"{sha256_of(weights)}"'
        assert response.headers["X-Linked-Etag"] == f'"{sha256_of(weights)}"'
        assert response.headers["X-Linked-Size"] == response.headers["Content-Length"] == str(weights.stat().st_size)
        assert "X-Xet-Hash" not in response.headers

    def test_is_a_text_files_etag_its_git_blob_id(self, client, hub_root):
        """Is the ETag of config.json its git blob id, without X-Linked headers?"""
        response = client.head(f"/{TINY}/resolve/main/config.json")
        assert response.headers["ETag"] == f'"{git_hash((hub_root / TINY / "config.json").read_bytes())}"'
        assert "X-Linked-Etag" not in response.headers

    def test_does_get_send_the_exact_bytes(self, client, hub_root):
        """Does GET on the full sha send exactly the file's bytes?"""
        sha = client.get(f"/api/models/{TINY}").json()["sha"]
        response = client.get(f"/{TINY}/resolve/{sha}/extra/notes.txt")
        assert response.content == (hub_root / TINY / "extra" / "notes.txt").read_bytes()

    @pytest.mark.parametrize("header, start, end", [("bytes=0-9", 0, 9), ("bytes=100-", 100, None),
                                                    ("bytes=-16", -16, None)])
    def test_does_a_range_get_answer_206_with_that_slice(self, client, hub_root, header, start, end):
        """Does a Range GET (as vLLM sends for the safetensors header) answer 206 with that slice?"""
        data = (hub_root / TINY / "model.safetensors").read_bytes()
        expected = data[start:] if end is None else data[start:end + 1]
        response = client.get(f"/{TINY}/resolve/main/model.safetensors", headers={"Range": header})
        assert response.status_code == 206
        assert response.content == expected
        first = start if start >= 0 else len(data) + start
        assert response.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"

    def test_is_a_range_past_the_end_416(self, client):
        """Does a Range starting past the end answer 416 with Content-Range bytes */size?"""
        response = client.get(f"/{TINY}/resolve/main/config.json", headers={"Range": "bytes=999999-"})
        assert response.status_code == 416
        assert response.headers["Content-Range"].startswith("bytes */")

    def test_is_a_missing_file_entry_not_found_with_the_commit(self, client):
        """Does a missing file give 404 EntryNotFound and still X-Repo-Commit (huggingface_hub caches it)?"""
        response = client.head(f"/{TINY}/resolve/main/missing.bin")
        assert (response.status_code, response.headers["X-Error-Code"]) == (404, "EntryNotFound")
        assert re.fullmatch(r"[0-9a-f]{40}", response.headers["X-Repo-Commit"])


class TestGated:
    def test_does_a_gated_repo_refuse_files_without_the_token(self, client):
        """Is info readable (gated='manual') while files give 401/403 GatedRepo, and 200 with the token?"""
        gated = "org/gated"
        assert client.get(f"/api/models/{gated}").json()["gated"] == "manual"
        url = f"/{gated}/resolve/main/config.json"
        no_token = client.get(url)
        wrong = client.get(url, headers={"Authorization": "Bearer nope"})
        right = client.get(url, headers={"Authorization": "Bearer hf_course_token"})
        assert (no_token.status_code, no_token.headers["X-Error-Code"]) == (401, "GatedRepo")
        assert (wrong.status_code, wrong.headers["X-Error-Code"]) == (403, "GatedRepo")
        assert right.status_code == 200


class TestCourseEndpoints:
    def test_does_health_name_the_root_and_pid(self, client, tiny_hub, hub_root):
        """Does /_course/health say ok, with the resolved root and the hub's pid?"""
        health = client.get("/_course/health").json()
        assert health["status"] == "ok"
        assert health["root"] == str(hub_root.resolve())
        assert health["pid"] == tiny_hub.pid

    def test_does_the_log_count_each_kind_of_request(self, client, tiny_hub):
        """After info, HEAD, GET and a ranged GET, are the per-file counters and bytes right?"""
        client.get(f"/api/models/{TINY}")
        client.head(f"/{TINY}/resolve/main/config.json")
        body = client.get(f"/{TINY}/resolve/main/config.json").content
        client.get(f"/{TINY}/resolve/main/model.safetensors", headers={"Range": "bytes=0-7"})
        stats = tiny_hub.stats()
        config = stats.file(TINY, "config.json")
        assert (config.heads, config.full_downloads, config.bytes_sent) == (1, 1, len(body))
        weights = stats.file(TINY, "model.safetensors")
        assert (weights.full_downloads, weights.ranged_reads, weights.bytes_sent) == (0, 1, 8)
        assert stats.metadata == {TINY: 1}
        assert stats.weight_downloads() == 0
        assert [r.kind for r in stats.recent] == ["metadata", "head", "download", "range"]

    def test_does_reset_return_the_counts_then_zero_them(self, client, tiny_hub):
        """Does reset_stats() (GET /_course/stats?reset=1) return the old counts and start from zero?"""
        client.get(f"/{TINY}/resolve/main/config.json")
        assert tiny_hub.reset_stats().full_downloads == 1
        after = tiny_hub.stats()
        assert (after.requests, after.full_downloads, after.files) == (0, 0, ())

    def test_are_stats_a_frozen_snapshot(self, tiny_hub):
        """Is the HubStats a frozen dataclass (a snapshot a lesson can keep)?"""
        stats = tiny_hub.stats()
        with pytest.raises(AttributeError):
            stats.requests = 5  # type: ignore[misc]
        assert hub.HubStats.from_dict(stats.to_dict()) == stats
