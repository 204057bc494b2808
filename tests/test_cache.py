"""The cache module: text tables over `scan_cache_dir()`, and the safe delete strategy (dry run, execute,
nothing outside the cache).

Caches are real folders: built file by file in the Hub's layout (blobs named by their etag,
snapshot symlinks, refs), or downloaded by the real huggingface_hub client from a course hub.
The cleaning policies are comprehensions in lessons 03 and 08; the ones below are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from huggingface_hub import CachedRevisionInfo, DeleteCacheStrategy, scan_cache_dir

from hub_fixtures import HF_CLI
from vllm_course import cache
from vllm_course.errors import CacheSafetyError, CacheTargetError

DAY = 86_400.0
CONFIG_V1 = b'{"model_type": "llama", "hidden_size": 8}'
CONFIG_V2 = b'{"model_type": "llama", "hidden_size": 8, "rope_theta": 10000}'
WEIGHTS = b"\x00\x01" * 5000  # 10,000 bytes, stored as an LFS blob (named by its sha256)
SECRET = b"outside the cache: must survive every clean-up"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def add_revision(cache_dir: Path, repo_id: str, files: dict[str, bytes], ref: str | None = "main") -> str:
    """Write one revision in the Hub's cache layout; return its commit hash. `ref` moves to it."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repr(sorted((n, git_oid(d)) for n, d in files.items())).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else git_oid(data)
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    snapshot.mkdir(parents=True, exist_ok=True)
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return commit


def revs(cache_dir: Path, *commits: str) -> list[CachedRevisionInfo]:
    """The scanned revisions with these commit hashes (every revision when none is given)."""
    found = [rev for repo in scan_cache_dir(cache_dir).repos for rev in repo.revisions]
    return [rev for rev in found if not commits or rev.commit_hash in commits]


def age(cache_dir: Path, repo_id: str, days: float) -> None:
    """Set the access and modification times of a repo's blobs `days` days back."""
    when = time.time() - days * DAY
    for blob in (cache_dir / ("models--" + repo_id.replace("/", "--")) / "blobs").iterdir():
        os.utime(blob, (when, when))


@pytest.fixture()
def hf_cache(tmp_path: Path) -> Path:
    """An empty hub cache folder."""
    folder = tmp_path / "hf" / "hub"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture()
def two_revisions(hf_cache: Path) -> tuple[Path, str, str]:
    """org/model with an old detached revision and `main`; they share the weights blob."""
    old = add_revision(hf_cache, "org/model", {"config.json": CONFIG_V1, "model.safetensors": WEIGHTS})
    age(hf_cache, "org/model", 3)
    new = add_revision(hf_cache, "org/model", {"config.json": CONFIG_V2, "model.safetensors": WEIGHTS})
    return hf_cache, old, new


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


class TestTable:
    def test_rows_newest_first_with_refs_and_idle_days(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does the table list both revisions newest first, with `main`, sizes and idle days, then the totals?"""
        folder, old, new = two_revisions
        lines = cache.table(scan_cache_dir(folder)).splitlines()
        assert lines[0].split() == ["repo", "revision", "refs", "files", "size", "accessed", "modified"]
        assert lines[1].split() == ["org/model", new[:8], "main", "2", "10.1", "kB", "0.0", "d", "ago", "0.0", "d", "ago"]
        assert lines[2].split()[:3] == ["org/model", old[:8], "-"] and "3.0 d ago" in lines[2]
        assert lines[3] == f"1 repo(s), 2 revision(s), 10.1 kB on disk in {folder.resolve()}"  # shared blob once
        assert cache.table(scan_cache_dir(folder), by="repo").splitlines()[1].split()[:3] == ["org/model", "2", "3"]

    def test_unknown_layout_is_one_line_error(self, hf_cache: Path) -> None:
        """Does asking for a table layout that does not exist say which ones do?"""
        with pytest.raises(CacheTargetError, match=r"^by='files' is not a table layout: use by='revision' or by='repo'\.$"):
            cache.table(scan_cache_dir(hf_cache), by="files")

    def test_corrupted_repo_becomes_a_warning_line(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a broken repo folder leave the table printed, with the library's warning under it?"""
        folder, _, _ = two_revisions
        (folder / "models--org--broken").mkdir()
        text = cache.table(scan_cache_dir(folder))
        assert "org/broken" not in text and text.count("\nwarning: Snapshots dir doesn't exist") == 1


class TestDryRun:
    def test_dry_run_is_the_librarys_strategy_and_deletes_nothing(self, two_revisions: tuple[Path, str, str]) -> None:
        """Is the plan for the old revision the library's own strategy, counting only its config blob?"""
        folder, old, _ = two_revisions
        before = sorted(folder.rglob("*"))
        strategy = cache.safe_delete_revisions(scan_cache_dir(folder), *revs(folder, old))
        assert isinstance(strategy, DeleteCacheStrategy)
        assert strategy == scan_cache_dir(folder).delete_revisions(old)  # nothing outside: nothing changed
        assert strategy.expected_freed_size == len(CONFIG_V1) and strategy.expected_freed_size_str == "41.0"
        assert sorted(folder.rglob("*")) == before

    def test_targets_by_revision_hash_and_folder(self, two_revisions: tuple[Path, str, str]) -> None:
        """Do a revision, its commit hash and its snapshot folder name the same revision, and a repo folder all?"""
        folder, old, new = two_revisions
        snapshot = folder / "models--org--model" / "snapshots" / old
        info = scan_cache_dir(folder)
        for target in (*revs(folder, old), old, snapshot, str(snapshot)):
            assert {p.name for p in cache.safe_delete_revisions(info, target).snapshots} == {old}
        assert cache.safe_delete_revisions(info, folder / "models--org--model").repos == {folder / "models--org--model"}

    def test_unknown_target_and_empty_selection(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a typo say where to look, and does a policy that selects nothing plan 0 bytes?"""
        folder, _, _ = two_revisions
        with pytest.raises(CacheTargetError, match=r"^'0000000' names no cached revision in .*hf/hub: see cache\.table"):
            cache.safe_delete_revisions(scan_cache_dir(folder), "0000000")
        assert cache.safe_delete_revisions(scan_cache_dir(folder)).expected_freed_size == 0


class TestExecute:
    def test_execute_removes_old_revision_keeps_shared_blob(self, two_revisions: tuple[Path, str, str]) -> None:
        """After executing, is the old snapshot and its own blob gone, the shared weights and main intact?"""
        folder, old, new = two_revisions
        repo = folder / "models--org--model"
        cache.safe_delete_revisions(scan_cache_dir(folder), old).execute()
        assert not (repo / "snapshots" / old).exists() and not (repo / "blobs" / git_oid(CONFIG_V1)).exists()
        assert (repo / "snapshots" / new / "model.safetensors").read_bytes() == WEIGHTS
        assert (repo / "refs" / "main").read_text() == new
        assert scan_cache_dir(folder).size_on_disk == len(CONFIG_V2) + len(WEIGHTS)

    def test_whole_repo_folder_goes_when_every_revision_is_planned(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does planning every revision remove the repo folder itself (the library's rule)?"""
        folder, _, _ = two_revisions
        strategy = cache.safe_delete_revisions(scan_cache_dir(folder), *revs(folder))
        assert [p.name for p in strategy.repos] == ["models--org--model"]
        strategy.execute()
        assert not (folder / "models--org--model").exists() and scan_cache_dir(folder).size_on_disk == 0

    def test_same_hash_in_two_repos_deletes_only_the_named_one(self, hf_cache: Path) -> None:
        """With identical content (so the course hub's same commit hash) in two repos, is only one touched?"""
        files = {"config.json": CONFIG_V1}
        commit = add_revision(hf_cache, "org/a", files)
        assert add_revision(hf_cache, "org/b", files) == commit
        info = scan_cache_dir(hf_cache)
        assert len(info.delete_revisions(commit).repos) == 1  # the library takes whichever it meets first
        with pytest.raises(CacheTargetError, match="One commit hash is cached in several repos"):
            cache.safe_delete_revisions(info, commit)
        org_a = next(rev for repo in info.repos if repo.repo_id == "org/a" for rev in repo.revisions)
        cache.safe_delete_revisions(info, org_a).execute()
        assert not (hf_cache / "models--org--a").exists()
        assert (hf_cache / "models--org--b" / "snapshots" / commit / "config.json").read_bytes() == CONFIG_V1


# The lessons' policies, as the notebooks write them (08: keep the newest N, idle for N days; 03/08: detached).
POLICIES = {
    "revision": lambda info, old: [rev for repo in info.repos for rev in repo.revisions if rev.commit_hash == old],
    "whole repo": lambda info, old: [rev for repo in info.repos for rev in repo.revisions],
    "detached": lambda info, old: [rev for repo in info.repos for rev in repo.revisions if not rev.refs],
    "keep newest 1": lambda info, old: [rev for repo in info.repos for rev in sorted(
        repo.revisions, key=lambda r: r.last_modified, reverse=True)[1:] if not rev.refs],
    "idle 1 day in 10 days": lambda info, old: [rev for repo in info.repos for rev in repo.revisions
                                                if time.time() + 10 * DAY - repo.last_accessed > DAY],
}


class TestSafety:
    def test_path_outside_the_cache_is_refused(self, two_revisions: tuple[Path, str, str], secret: Path) -> None:
        """Is a path outside the cache refused with CacheSafetyError, even via `..`, and the cache itself?"""
        folder, _, _ = two_revisions
        for target in (secret, secret.parent, folder / ".." / ".." / "outside"):
            with pytest.raises(CacheSafetyError, match="is outside the Hugging Face cache"):
                cache.safe_delete_revisions(scan_cache_dir(folder), target)
        with pytest.raises(CacheSafetyError, match="Refusing to delete the whole cache folder"):
            cache.safe_delete_revisions(scan_cache_dir(folder), folder)
        assert secret.read_bytes() == SECRET

    def test_symlinked_folder_pointing_out_is_refused(self, two_revisions: tuple[Path, str, str], secret: Path) -> None:
        """Is a path through a cache entry that links to a folder outside refused (it resolves outside)?"""
        folder, _, _ = two_revisions
        (folder / "evil").symlink_to(secret.parent, target_is_directory=True)
        with pytest.raises(CacheSafetyError, match="evil/secret.txt is outside the Hugging Face cache"):
            cache.safe_delete_revisions(scan_cache_dir(folder), folder / "evil" / "secret.txt")
        with pytest.raises(CacheTargetError, match="names no cached revision"):
            cache.safe_delete_revisions(scan_cache_dir(folder), folder / "evil")  # the link is inside, names nothing
        assert secret.read_bytes() == SECRET

    def test_library_strategy_alone_deletes_the_outside_file(self, two_revisions: tuple[Path, str, str],
                                                              secret: Path) -> None:
        """Why the checks exist: does huggingface_hub's own strategy os.remove() a symlink's outside target?

        If a future huggingface_hub stops doing this, this test fails: update lesson 03's safety section.
        """
        folder, old, _ = two_revisions
        (folder / "models--org--model" / "snapshots" / old / "notes.txt").symlink_to(secret)
        scan_cache_dir(folder).delete_revisions(old).execute()
        assert not secret.exists()

    @pytest.mark.parametrize("policy", list(POLICIES))
    def test_snapshot_link_to_outside_file_survives(self, two_revisions: tuple[Path, str, str], secret: Path,
                                                    policy: str) -> None:
        """A snapshot symlink pointing at a file outside the cache: is that file intact after any clean-up?"""
        folder, old, _ = two_revisions
        (folder / "models--org--model" / "snapshots" / old / "notes.txt").symlink_to(secret)
        os.utime(secret, (time.time() - 3 * DAY,) * 2)  # as old as the old revision (its mtime counts in last_modified)
        info = scan_cache_dir(folder)
        assert secret in info.delete_revisions(old).blobs  # the library's own strategy would os.remove() it
        chosen = POLICIES[policy](info, old)
        assert old in {rev.commit_hash for rev in chosen}
        strategy = cache.safe_delete_revisions(info, *chosen)
        assert secret not in strategy.blobs
        inside = {f.blob_path: f.size_on_disk for repo in info.repos for rev in repo.revisions for f in rev.files
                  if f.blob_path != secret}
        strategy.execute()
        assert secret.read_bytes() == SECRET
        after = {f.blob_path for repo in scan_cache_dir(folder).repos for rev in repo.revisions for f in rev.files}
        assert strategy.expected_freed_size == sum(size for path, size in inside.items() if path not in after)
        assert not (folder / "models--org--model" / "snapshots" / old).exists()

    def test_blob_link_and_folder_link_to_outside_survive(self, hf_cache: Path, secret: Path) -> None:
        """A blob that is a symlink out, and a symlinked folder in a snapshot: are their targets untouched?"""
        commit = add_revision(hf_cache, "org/m", {"config.json": CONFIG_V1})
        repo = hf_cache / "models--org--m"
        (repo / "blobs" / ("f" * 40)).symlink_to(secret)
        (repo / "snapshots" / commit / "linked.txt").symlink_to(Path("../../blobs") / ("f" * 40))
        (repo / "snapshots" / commit / "folder").symlink_to(secret.parent, target_is_directory=True)
        strategy = cache.safe_delete_revisions(scan_cache_dir(hf_cache), commit)
        assert strategy.expected_freed_size == len(CONFIG_V1)  # neither link frees the bytes it points at
        strategy.execute()
        assert secret.read_bytes() == SECRET and sorted(p.name for p in secret.parent.iterdir()) == ["secret.txt"]
        assert not repo.exists()

    def test_detached_policy_matches_hf_cache_prune(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does the lessons' detached comprehension plan what `hf cache prune --dry-run` would, with the same bytes?"""
        folder, old, _ = two_revisions
        info = scan_cache_dir(folder)
        strategy = cache.safe_delete_revisions(info, *POLICIES["detached"](info, old))
        done = subprocess.run([HF_CLI, "cache", "prune", "--dry-run", "--cache-dir", str(folder), "--format", "json"],
                              capture_output=True, text=True, env=dict(os.environ, HF_HUB_DISABLE_UPDATE_CHECK="1"))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["revisions"] == 1 and [p.name for p in strategy.snapshots] == [old]
        assert json.loads(done.stdout)["size"] == f"{strategy.expected_freed_size}.0" == f"{len(CONFIG_V1)}.0"
