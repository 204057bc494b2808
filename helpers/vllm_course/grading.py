"""Independent checks the exercises' hidden tests call (nbgrader autograde).

Each check recomputes the fact from the source of truth instead of trusting the learner's
variables: the Hugging Face cache on disk (`scan_cache_dir`), the bytes of the built course repo,
the course hub's own request log (`GET /_course/stats` at HF_ENDPOINT), a TCP connection to the
endpoint. A value that was only hard-coded from an earlier run fails them.

Checks raise `GradingCheckError` (an `AssertionError`, so nbgrader counts the cell as failed) with a
message that says what was expected, what was found, and a hint; the message is what the learner
reads in the feedback, so it never quotes test code.

Example (a hidden test cell):
    >>> from vllm_course import grading                                        # doctest: +SKIP
    >>> snap = grading.check_snapshot_in_cache(snapshot_path, "course/SmolLM2-135M-Instruct")  # doctest: +SKIP
    >>> grading.check_blobs(snap)                                              # doctest: +SKIP
    >>> grading.weight_downloads(grading.hub_stats(), "course/SmolLM2-135M-Instruct")  # doctest: +SKIP
    {'model.safetensors': 1}
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import models
from .errors import GradingCheckError
from .hub import HubHandle, HubStats
from .hub import start as start_hub

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class CachedSnapshot:
    """One cached revision of a repo, as `scan_cache_dir()` sees it."""

    repo_id: str
    commit: str
    path: Path  # <cache>/models--org--name/snapshots/<commit>
    blobs: dict[str, Path]  # file path inside the snapshot -> blob it points to

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted(self.blobs))


# ---------------------------------------------------------------- the Hugging Face cache


def hub_cache() -> Path:
    """The HF_HUB_CACHE this process's huggingface_hub uses (read at its import)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).resolve()


def cached_snapshot(repo_id: str, cache_dir: str | os.PathLike[str] | None = None) -> CachedSnapshot:
    """Return the cached revision of `repo_id` that `main` points to (or the only one).

    Raises:
        GradingCheckError: the repo is not in the cache, or it has several revisions and none is main.
    """
    from huggingface_hub import scan_cache_dir

    where = Path(cache_dir) if cache_dir is not None else hub_cache()
    repos = [r for r in scan_cache_dir(where).repos if r.repo_id == repo_id and r.repo_type == "model"]
    if not repos:
        raise GradingCheckError(f"{repo_id} is not in the cache {where}: download it first (snapshot_download).")
    revisions = sorted(repos[0].revisions, key=lambda r: "main" not in r.refs)
    if len(revisions) > 1 and "main" not in revisions[0].refs:
        raise GradingCheckError(f"{repo_id} has {len(revisions)} cached revisions and none is `main`.")
    rev = revisions[0]
    blobs = {str(f.file_path.relative_to(rev.snapshot_path)): Path(f.blob_path) for f in rev.files}
    return CachedSnapshot(repo_id, rev.commit_hash, Path(rev.snapshot_path), blobs)


def check_snapshot_in_cache(path: str | os.PathLike[str], repo_id: str) -> CachedSnapshot:
    """Check that `path` is the cached snapshot of `repo_id` and holds every file of the repo.

    Returns:
        The snapshot as the cache scan sees it.

    Raises:
        GradingCheckError: the path is outside HF_HUB_CACHE, is another folder than the scan's
            snapshot, or lacks a file of the built repo.
    """
    given = Path(path)
    cache = hub_cache()
    if not given.is_dir():
        raise GradingCheckError(f"{given} is not a folder: return the snapshot folder that snapshot_download gives.")
    if cache not in given.resolve().parents:
        raise GradingCheckError(f"{given} is not inside HF_HUB_CACHE ({cache}): download into the cache, "
                                "not into a local folder (no local_dir here).")
    snap = cached_snapshot(repo_id)
    if given.resolve() != snap.path.resolve():
        raise GradingCheckError(f"{given} is not the snapshot of {repo_id}@main the cache holds ({snap.path}).")
    missing = sorted(set(repo_files(repo_id)) - set(snap.files))
    if missing:
        raise GradingCheckError(f"The snapshot of {repo_id} lacks {', '.join(missing)}: download every file.")
    return snap


def check_blobs(snapshot: CachedSnapshot) -> None:
    """Check each snapshot file is a link to its blob, whose bytes hash to the blob's name and equal the repo's.

    A blob is named after its etag: the sha256 of an LFS file (weights), the git blob id (sha1 of
    `blob <size>\\0<bytes>`) of a small one.

    Raises:
        GradingCheckError: a link points elsewhere, a blob is corrupt, or its bytes are not the repo's.
    """
    source = models.require(snapshot.repo_id)
    for name, blob in sorted(snapshot.blobs.items()):
        link = snapshot.path / name
        if link.resolve() != blob.resolve():
            raise GradingCheckError(f"{link} does not point to its blob {blob}.")
        sha256, git_sha1 = _hashes(blob)
        if blob.name not in (sha256, git_sha1):
            raise GradingCheckError(f"The blob of {name} ({blob.name}) does not hash to its name: it is corrupt.")
        if (source / name).is_file() and _hashes(source / name)[0] != sha256:
            raise GradingCheckError(f"{name} in the cache differs from the file the hub serves.")


def repo_files(repo_id: str) -> tuple[str, ...]:
    """Files of a built course repo (what the hub lists for it), as paths relative to the repo."""
    root = models.require(repo_id)
    return tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*")
                        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)))


def check_folder_matches_repo(folder: str | os.PathLike[str], repo_id: str) -> None:
    """Check a local folder (e.g. a `local_dir` download) holds every repo file with the same bytes.

    Raises:
        GradingCheckError: a file is missing, is a link into the HF cache, or differs from the repo's.
    """
    folder, source = Path(folder), models.require(repo_id)
    for name in repo_files(repo_id):
        mine = folder / name
        if not mine.is_file():
            raise GradingCheckError(f"{mine} is missing: download every file of {repo_id} into {folder}.")
        if mine.is_symlink():
            raise GradingCheckError(f"{mine} is a link ({os.readlink(mine)}): an offline folder must hold real files.")
        if _hashes(mine)[0] != _hashes(source / name)[0]:
            raise GradingCheckError(f"{mine} differs from {repo_id}'s {name}: download it again.")


# ---------------------------------------------------------------- the course hub's log


def hub_stats(url: str | None = None) -> HubStats:
    """The request log of the course hub at `url` (default: this process's HF_ENDPOINT).

    Raises:
        GradingCheckError: nothing answers there, or it is not a course hub.
    """
    url = (url or os.environ.get("HF_ENDPOINT", "")).rstrip("/")
    try:
        answer = httpx.get(f"{url}/_course/stats", timeout=10.0, trust_env=False)
        answer.raise_for_status()
        return HubStats.from_dict(answer.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise GradingCheckError(f"The course hub at HF_ENDPOINT={url!r} did not answer: keep it running "
                                "(the setup cell starts it).") from exc


def weight_downloads(stats: HubStats, repo_id: str) -> dict[str, int]:
    """Full downloads (status 200, whole file) of each weight file of `repo_id` in a hub log.

    Every weight file of the built repo is a key, with 0 if it was never downloaded; ranged
    reads (vLLM's header peeks) and HEADs do not count.
    """
    counts = {name: 0 for name in repo_files(repo_id) if name.endswith(WEIGHT_SUFFIXES)}
    for item in stats.files:
        if item.repo_id == repo_id and item.path.endswith(WEIGHT_SUFFIXES):
            counts[item.path] = item.full_downloads
    return counts


def check_each_weight_downloaded_once(stats: HubStats, repo_id: str) -> None:
    """Check the hub sent each weight file of `repo_id` exactly once.

    Raises:
        GradingCheckError: a weight file was never downloaded, or more than once.
    """
    counts = weight_downloads(stats, repo_id)
    wrong = {name: n for name, n in counts.items() if n != 1}
    if wrong:
        detail = ", ".join(f"{name} {n} time(s)" for name, n in sorted(wrong.items()))
        raise GradingCheckError(f"The hub sent {detail}; expected each weight file of {repo_id} once: "
                                "the first download fills the cache and every later load must reuse it.")


def endpoint_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether anything answers HTTP at `url` (a stopped hub: connection refused, False)."""
    try:
        httpx.get(f"{url.rstrip('/')}/_course/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return True


def sentinel_hub() -> HubHandle:
    """Start a private hub that serves no model and logs every request (port chosen by the OS).

    Point a client that must stay offline at it: any request it sends shows up in `stats()`
    (and fails fast with a 404, instead of ~2 minutes of retries against a closed port).
    """
    return start_hub(root=tempfile.mkdtemp(prefix="sentinel-hub-"), port=0)


# ---------------------------------------------------------------- the offline exercise


PROBE = textwrap.dedent('''\
    """Grading probe: report what a child process sees (same command line as offline_generate.py)."""
    import json, os, sys
    from huggingface_hub import constants

    print("probe starting")
    print(json.dumps({"offline": constants.HF_HUB_OFFLINE, "answer": "probe", "argv": sys.argv[1:],
                      "env_flag": os.environ.get("HF_HUB_OFFLINE")}))
''')


def write_probe(folder: str | os.PathLike[str]) -> Path:
    """Write a tiny script with the offline script's command line that reports the child's offline flag."""
    path = Path(folder) / "grading_probe.py"
    path.write_text(PROBE, encoding="utf-8")
    return path


def offline_env() -> dict[str, str]:
    """This process's environment with HF_HUB_OFFLINE=1 (what a correct child process gets)."""
    return dict(os.environ, HF_HUB_OFFLINE="1")


def python() -> str:
    """The interpreter of this kernel (children must use the same venv)."""
    return sys.executable


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file's bytes."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()
