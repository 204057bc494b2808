"""The cache helpers: scan rows, deletion plans (dry run, execute, safety), cleaning policies,
the free-space check and checksum verification.

Caches are real folders: built file by file in the Hub's layout (blobs named by their etag,
snapshot symlinks, refs), or downloaded by the real huggingface_hub client from a course hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, scan_cache_dir

from hub_fixtures import HF_CLI, TINY, client_env, hub_root, run_py, tiny_hub  # noqa: F401
from vllm_course import cache
from vllm_course.errors import CacheSafetyError, CacheTargetError, InsufficientDiskSpaceError

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


class TestScan:
    def test_rows_newest_first_with_refs(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a scan list both revisions, newest first, with `main` on the new one and sizes per revision?"""
        folder, old, new = two_revisions
        found = cache.scan(folder)
        assert [r.commit_hash for r in found.revisions] == [new, old]
        assert [r.refs for r in found.revisions] == [("main",), ()]
        assert found.revisions[1].detached and not found.revisions[0].detached
        assert found.revisions[0].size_on_disk == len(CONFIG_V2) + len(WEIGHTS)
        assert found.size_on_disk == len(CONFIG_V1) + len(CONFIG_V2) + len(WEIGHTS)  # shared blob counted once
        assert found.repos[0].nb_revisions == 2 and found.repos[0].nb_files == 3

    def test_text_table_and_html(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does the table show short hashes, refs, sizes and idle days, and the HTML escape repo ids?"""
        folder, old, new = two_revisions
        found = cache.scan(folder)
        lines = str(found).splitlines()
        assert lines[0].split() == ["repo", "revision", "refs", "files", "size", "accessed", "modified"]
        assert lines[1].split() == ["org/model", new[:8], "main", "2", "10.1", "kB", "0.0", "d", "ago", "0.0", "d", "ago"]
        assert lines[2].split()[:3] == ["org/model", old[:8], "-"] and "3.0 d ago" in lines[2]
        assert lines[3] == f"1 repo(s), 2 revision(s), 10.1 kB on disk in {folder.resolve()}"
        assert "<td>org/model</td>" in found._repr_html_()
        assert found.table(by="repo").splitlines()[1].split()[:3] == ["org/model", "2", "3"]

    def test_unknown_layout_is_one_line_error(self, hf_cache: Path) -> None:
        """Does asking for a table layout that does not exist say which ones do?"""
        with pytest.raises(CacheTargetError, match=r"^by='files' is not a table layout: use by='revision' or by='repo'\.$"):
            cache.scan(hf_cache).table(by="files")

    def test_explicit_missing_folder_is_an_error(self, tmp_path: Path) -> None:
        """Is a mistyped cache_dir reported (instead of scanning as an empty cache)?"""
        with pytest.raises(CacheTargetError, match="is not a folder: pass the hub cache"):
            cache.scan(tmp_path / "nope")

    def test_corrupted_repo_becomes_a_warning(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a broken repo folder leave the scan running, reported as the library's warning?"""
        folder, _, _ = two_revisions
        (folder / "models--org--broken").mkdir()
        found = cache.scan(folder)
        assert [r.repo_id for r in found.repos] == ["org/model"]
        assert len(found.warnings) == 1 and "Snapshots dir doesn't exist" in found.warnings[0]
        assert "warning: Snapshots dir" in str(found)


class TestPlanDryRun:
    def test_dry_run_reports_only_unshared_bytes_and_deletes_nothing(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a plan for the old revision count only its own config blob and leave every file in place?"""
        folder, old, _ = two_revisions
        before = sorted(p for p in folder.rglob("*"))
        plan = cache.plan_delete(old, cache_dir=folder)
        assert plan.expected_freed_size == len(CONFIG_V1) == plan.strategy.expected_freed_size
        assert [r.commit_hash for r in plan.revisions] == [old]
        assert sorted(p for p in folder.rglob("*")) == before
        text = str(plan)
        assert text.startswith(f"Dry run (asked for {old[:8]}): delete 1 revision(s) of 1 repo(s), freeing {len(CONFIG_V1)} B.")
        assert text.endswith("Nothing is deleted until .execute().")

    def test_targets_by_prefix_repo_type_path_and_repo_at_hash(self, two_revisions: tuple[Path, str, str]) -> None:
        """Do the accepted target forms all name the same revisions?"""
        folder, old, new = two_revisions
        snapshot = folder / "models--org--model" / "snapshots" / old
        for target in (old[:7], f"org/model@{old[:10]}", snapshot, str(snapshot)):
            assert [r.commit_hash for r in cache.plan_delete(target, cache_dir=folder).revisions] == [old]
        for target in ("org/model", "model/org/model", "models--org--model", folder / "models--org--model"):
            assert {r.commit_hash for r in cache.plan_delete(target, cache_dir=folder).revisions} == {old, new}

    def test_unknown_target_is_one_line_error(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a typo in a repo id say where to look instead of planning nothing?"""
        folder, _, _ = two_revisions
        with pytest.raises(CacheTargetError, match=r"^'org/modle' names no repo or revision in the cache .*hf/hub: see cache\.scan\(\)"):
            cache.plan_delete("org/modle", cache_dir=folder)
        with pytest.raises(CacheTargetError, match="needs at least one"):
            cache.plan_delete(cache_dir=folder)


class TestPlanExecute:
    def test_execute_removes_old_revision_keeps_shared_blob(self, two_revisions: tuple[Path, str, str]) -> None:
        """After executing, is the old snapshot and its own blob gone, the shared weights and main intact?"""
        folder, old, new = two_revisions
        repo = folder / "models--org--model"
        result = cache.plan_delete(old, cache_dir=folder).execute()
        assert result.freed_bytes == len(CONFIG_V1)
        assert not (repo / "snapshots" / old).exists() and not (repo / "blobs" / git_oid(CONFIG_V1)).exists()
        assert (repo / "snapshots" / new / "model.safetensors").read_bytes() == WEIGHTS
        assert (repo / "refs" / "main").read_text() == new
        assert result.remaining_bytes == len(CONFIG_V2) + len(WEIGHTS)

    def test_whole_repo_folder_goes_when_every_revision_is_planned(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does planning every revision remove the repo folder itself (the library's rule)?"""
        folder, _, _ = two_revisions
        plan = cache.plan_delete("org/model", cache_dir=folder)
        assert [p.name for p in plan.whole_repos] == ["models--org--model"]
        assert plan.execute().remaining_bytes == 0 and not (folder / "models--org--model").exists()

    def test_second_execute_is_refused(self, two_revisions: tuple[Path, str, str]) -> None:
        """Is an already executed plan refused rather than re-run on a changed cache?"""
        folder, old, _ = two_revisions
        plan = cache.plan_delete(old, cache_dir=folder)
        plan.execute()
        with pytest.raises(CacheTargetError, match="no longer in the cache"):
            plan.execute()

    def test_same_hash_in_two_repos_deletes_only_the_named_one(self, hf_cache: Path) -> None:
        """With identical content (so the course hub's same commit hash) in two repos, is only one touched?"""
        files = {"config.json": CONFIG_V1}
        commit = add_revision(hf_cache, "org/a", files)
        assert add_revision(hf_cache, "org/b", files) == commit
        library = scan_cache_dir(hf_cache).delete_revisions(commit)  # the library takes whichever it meets first
        assert len(library.repos) == 1
        with pytest.raises(CacheTargetError, match="matches revisions of 2 repos"):
            cache.plan_delete(commit, cache_dir=hf_cache)
        cache.plan_delete(f"org/a@{commit}", cache_dir=hf_cache).execute()
        assert not (hf_cache / "models--org--a").exists()
        assert (hf_cache / "models--org--b" / "snapshots" / commit / "config.json").read_bytes() == CONFIG_V1


class TestSafety:
    def test_path_outside_the_cache_is_refused(self, two_revisions: tuple[Path, str, str], secret: Path) -> None:
        """Is a path outside the cache refused with CacheSafetyError, even via `..`?"""
        folder, _, _ = two_revisions
        for target in (secret, secret.parent, folder / ".." / ".." / "outside"):
            with pytest.raises(CacheSafetyError, match="is outside the Hugging Face cache"):
                cache.plan_delete(target, cache_dir=folder)
        with pytest.raises(CacheSafetyError, match="Refusing to delete the whole cache folder"):
            cache.plan_delete(folder, cache_dir=folder)
        assert secret.read_bytes() == SECRET

    def test_symlinked_repo_folder_pointing_out_is_refused(self, two_revisions: tuple[Path, str, str], secret: Path) -> None:
        """Is a path through a cache entry that links to a folder outside refused (it resolves outside)?"""
        folder, _, _ = two_revisions
        (folder / "evil").symlink_to(secret.parent, target_is_directory=True)
        with pytest.raises(CacheSafetyError, match="evil/secret.txt is outside the Hugging Face cache"):
            cache.plan_delete(folder / "evil" / "secret.txt", cache_dir=folder)
        with pytest.raises(CacheTargetError, match="not a cached repo folder"):
            cache.plan_delete(folder / "evil", cache_dir=folder)  # the link itself is inside, but names no repo
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

    @pytest.mark.parametrize("how", ["revision", "whole repo", "detached policy", "idle policy"])
    def test_snapshot_link_to_outside_file_survives(self, two_revisions: tuple[Path, str, str], secret: Path,
                                                    how: str) -> None:
        """A snapshot symlink pointing at a file outside the cache: is that file intact after any clean-up?"""
        folder, old, _ = two_revisions
        (folder / "models--org--model" / "snapshots" / old / "notes.txt").symlink_to(secret)
        library = scan_cache_dir(folder).delete_revisions(old)
        assert secret in library.blobs  # the library's own strategy would os.remove() it
        plans = {"revision": lambda: cache.plan_delete(old, cache_dir=folder),
                 "whole repo": lambda: cache.plan_delete("org/model", cache_dir=folder),
                 "detached policy": lambda: cache.plan_detached(cache_dir=folder),
                 "idle policy": lambda: cache.plan_not_accessed(1, now=time.time() + 10 * DAY, cache_dir=folder)}
        plan = plans[how]()
        assert plan.kept_outside == (secret,)
        assert secret not in plan.strategy.blobs
        assert "kept (symlink target outside the cache)" in str(plan)
        result = plan.execute()
        assert secret.read_bytes() == SECRET
        assert result.freed_bytes == plan.expected_freed_size  # the estimate left the secret's bytes out
        assert not (folder / "models--org--model" / "snapshots" / old).exists()

    def test_blob_link_and_folder_link_to_outside_survive(self, hf_cache: Path, secret: Path) -> None:
        """A blob that is a symlink out, and a symlinked folder in a snapshot: are their targets untouched?"""
        commit = add_revision(hf_cache, "org/m", {"config.json": CONFIG_V1})
        repo = hf_cache / "models--org--m"
        (repo / "blobs" / ("f" * 40)).symlink_to(secret)
        (repo / "snapshots" / commit / "linked.txt").symlink_to(Path("../../blobs") / ("f" * 40))
        (repo / "snapshots" / commit / "folder").symlink_to(secret.parent, target_is_directory=True)
        plan = cache.plan_delete("org/m", cache_dir=hf_cache)
        assert secret in plan.kept_outside
        plan.execute()
        assert secret.read_bytes() == SECRET and sorted(p.name for p in secret.parent.iterdir()) == ["secret.txt"]
        assert not repo.exists()


class TestPolicies:
    def test_keep_latest_keeps_newest_and_refs(self, hf_cache: Path) -> None:
        """With three revisions, does keep-latest-1 pick the two older ones, sparing a ref'd one unless told?"""
        oldest = add_revision(hf_cache, "org/m", {"config.json": b"1"}, ref="v1")
        age(hf_cache, "org/m", 5)
        middle = add_revision(hf_cache, "org/m", {"config.json": b"2"}, ref=None)
        age(hf_cache, "org/m", 2)  # ages every blob: the newest below is written after this
        newest = add_revision(hf_cache, "org/m", {"config.json": b"3"})
        assert {r.commit_hash for r in cache.plan_keep_latest(1, cache_dir=hf_cache).revisions} == {middle}
        assert {r.commit_hash for r in cache.plan_keep_latest(1, keep_refs=False, cache_dir=hf_cache).revisions} == {oldest, middle}
        assert cache.plan_keep_latest(3, cache_dir=hf_cache).revisions == ()
        assert newest not in {r.commit_hash for r in cache.plan_keep_latest(1, keep_refs=False, cache_dir=hf_cache).revisions}

    def test_keep_latest_rejects_zero_and_unknown_repo(self, hf_cache: Path) -> None:
        """Are n=0 and a repo that is not cached one-line errors?"""
        with pytest.raises(CacheTargetError, match=r"^n=0: keep at least 1 revision per repo; to drop whole repos use plan_delete"):
            cache.plan_keep_latest(0, cache_dir=hf_cache)
        with pytest.raises(CacheTargetError, match="org/x is not in the cache"):
            cache.plan_keep_latest(1, repo_id="org/x", cache_dir=hf_cache)

    def test_not_accessed_selects_idle_repo_whole(self, hf_cache: Path) -> None:
        """Does a 30-day idle policy take the repo untouched for 40 days (whole folder) and spare the fresh one?"""
        add_revision(hf_cache, "org/idle", {"model.safetensors": WEIGHTS})
        age(hf_cache, "org/idle", 40)
        add_revision(hf_cache, "org/fresh", {"config.json": CONFIG_V1})
        plan = cache.plan_not_accessed(30, cache_dir=hf_cache)
        assert plan.repo_ids == ("org/idle",) and plan.expected_freed_size == len(WEIGHTS)
        assert str(plan).startswith("Dry run (not accessed for 30 day(s)): delete 1 revision(s)")
        plan.execute()
        assert [r.repo_id for r in cache.scan(hf_cache).repos] == ["org/fresh"]
        with pytest.raises(CacheTargetError, match=r"^days=0: pass a positive number of days"):
            cache.plan_not_accessed(0, cache_dir=hf_cache)

    def test_detached_policy_matches_hf_cache_prune(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does the detached policy pick exactly what `hf cache prune --dry-run` would, with the same bytes?"""
        folder, old, _ = two_revisions
        plan = cache.plan_detached(cache_dir=folder)
        assert [r.commit_hash for r in plan.revisions] == [old]
        done = subprocess.run([HF_CLI, "cache", "prune", "--dry-run", "--cache-dir", str(folder), "--format", "json"],
                              capture_output=True, text=True, env=dict(os.environ, HF_HUB_DISABLE_UPDATE_CHECK="1"))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["revisions"] == 1 and json.loads(done.stdout)["size"] == f"{len(CONFIG_V1)}.0"
        assert plan.expected_freed_size == len(CONFIG_V1) and (folder / "models--org--model" / "snapshots" / old).exists()

    def test_empty_plan_executes_to_nothing(self, two_revisions: tuple[Path, str, str]) -> None:
        """Does a policy that selects nothing say so and free 0 bytes?"""
        folder, _, _ = two_revisions
        plan = cache.plan_not_accessed(365, cache_dir=folder)
        assert str(plan) == "Dry run (not accessed for 365 day(s)): nothing to delete."
        assert plan.execute().freed_bytes == 0


@pytest.fixture()
def downloaded(tmp_path: Path, tiny_hub) -> Path:  # noqa: F811
    """org/tiny downloaded into a fresh cache by the real client (a subprocess), from a course hub."""
    env = client_env(tmp_path / "client-hf", tiny_hub.url)
    run_py(f"from huggingface_hub import snapshot_download; import json; "
           f"print(json.dumps({{'path': snapshot_download({TINY!r})}}))", env)
    return tmp_path / "client-hf" / "hub"


class TestFreeSpace:
    def test_fits_then_counts_cached_blobs(self, tmp_path: Path, tiny_hub, downloaded: Path) -> None:  # noqa: F811
        """Does the check size the repo from its metadata, and count files already cached as not needed?"""
        api = HfApi(endpoint=tiny_hub.url)
        fresh = cache.check_free_space(TINY, cache_dir=tmp_path / "never-created" / "hub", api=api)
        sizes = {s.rfilename: s.size for s in api.model_info(TINY, files_metadata=True).siblings}
        assert fresh.total_bytes == sum(sizes.values()) and fresh.cached_bytes == 0 and fresh.fits
        assert fresh.disk_path == tmp_path  # the nearest folder that exists
        again = cache.check_free_space(TINY, cache_dir=downloaded, api=api)
        assert again.needed_bytes == 0 and again.nb_files == len(sizes) == 3
        only_weights = cache.check_free_space(TINY, allow_patterns="*.safetensors", cache_dir=tmp_path, api=api)
        assert only_weights.total_bytes == sizes["model.safetensors"]

    def test_not_enough_space_names_needed_and_free(self, tmp_path: Path, tiny_hub) -> None:  # noqa: F811
        """When the download plus the space to keep free exceeds the free bytes, is the error one actionable line?"""
        api = HfApi(endpoint=tiny_hub.url)
        free = cache.check_free_space(TINY, cache_dir=tmp_path, api=api).free_bytes
        with pytest.raises(InsufficientDiskSpaceError) as info:
            cache.check_free_space(TINY, cache_dir=tmp_path, api=api, keep_free_bytes=free)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{TINY} needs 65.") and " kept free but " in message
        assert f"{tmp_path} has only {cache.format_bytes(free)[:-3]}" in message and "HF_HUB_CACHE" in message
        check = cache.check_free_space(TINY, cache_dir=tmp_path, api=api, keep_free_bytes=free, raise_error=False)
        assert not check.fits and "does NOT fit" in str(check)

    def test_unknown_repo_and_bad_margin(self, tmp_path: Path, tiny_hub) -> None:  # noqa: F811
        """Are a repo the hub does not have, and a negative margin, one-line CacheTargetErrors?"""
        api = HfApi(endpoint=tiny_hub.url)
        with pytest.raises(CacheTargetError, match=r"^org/nope is not a model repo on http://127\.0\.0\.1:\d+: check the id"):
            cache.check_free_space("org/nope", cache_dir=tmp_path, api=api)
        with pytest.raises(CacheTargetError, match="keep_free_bytes=-1"):
            cache.check_free_space(TINY, cache_dir=tmp_path, api=api, keep_free_bytes=-1)


class TestVerify:
    def test_offline_blob_names_match_then_catch_corruption(self, downloaded: Path) -> None:
        """Do a real download's blobs hash to their etag names, and is one flipped byte caught?"""
        report = cache.verify(TINY, cache_dir=downloaded, offline=True)
        assert report.ok and report.checked == 3 and report.source == "blob names, offline"
        weights = (report.path / "model.safetensors").resolve()
        assert len(weights.name) == 64  # LFS: named by sha256
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
        bad = cache.verify(TINY, cache_dir=downloaded, offline=True)
        assert [(m.path, m.algorithm, m.expected) for m in bad.mismatches] == [("model.safetensors", "sha256", weights.name)]
        assert "MISMATCH model.safetensors" in str(bad)

    def test_online_uses_the_library_and_agrees(self, downloaded: Path, tiny_hub) -> None:  # noqa: F811
        """Does the hub-backed check (verify_repo_checksums) pass, then flag a corrupted small file by git-sha1?"""
        api = HfApi(endpoint=tiny_hub.url)
        assert cache.verify(TINY, cache_dir=downloaded, api=api, offline=False).ok
        config = (downloaded / "models--org--tiny" / "snapshots")
        target = next(config.glob("*/config.json")).resolve()
        target.write_bytes(target.read_bytes() + b" ")
        report = cache.verify(TINY, cache_dir=downloaded, api=api, offline=False)
        assert [(m.path, m.algorithm) for m in report.mismatches] == [("config.json", "git-sha1")]
        assert report.source == "hub: verify_repo_checksums"

    def test_not_cached_is_one_line_error(self, hf_cache: Path) -> None:
        """Is verifying a repo that is not cached a CacheTargetError that says to download first?"""
        with pytest.raises(CacheTargetError, match=r"^org/x \(main\) is not in the cache .*: download it first"):
            cache.verify("org/x", cache_dir=hf_cache, offline=True)

    def test_offline_does_not_read_outside_the_cache(self, hf_cache: Path, secret: Path) -> None:
        """Is a blob symlinked out of the cache reported, not read?"""
        commit = add_revision(hf_cache, "org/m", {"config.json": CONFIG_V1})
        (hf_cache / "models--org--m" / "blobs" / ("a" * 40)).symlink_to(secret)
        (hf_cache / "models--org--m" / "snapshots" / commit / "x.txt").symlink_to(Path("../../blobs") / ("a" * 40))
        report = cache.verify("org/m", cache_dir=hf_cache, offline=True)
        assert [m.path for m in report.mismatches] == ["x.txt"]
        assert "points outside the cache" in report.mismatches[0].actual
