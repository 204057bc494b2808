"""The hub's view of its root folder (`<root>/<org>/<name>/<files>`); paths are checked against the root, dot names
never served. A commit sha is sha1 over the repo id and its sorted `path sha256` lines: stable on every machine
and, as on the real Hub, never shared by two repos (`HFCacheInfo.delete_revisions(hash)` relies on that)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub.utils.sha import git_hash

from ..errors import HubError
from ..formats import WEIGHT_FILES

# Served as git-LFS objects, as the Hub does: weights and other binary formats, or anything over 10 MiB.
LFS_SUFFIXES = (*WEIGHT_FILES, ".ckpt", ".h5", ".msgpack", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024
GATED_MARKER = ".gated"  # in a repo folder: the repo is gated; its lines are the tokens let through

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class RepoNotFound(LookupError):
    """No repo with that id under the root (or the id is malformed)."""


class RevisionNotFound(LookupError):
    """The repo exists but the revision is neither `main` nor its commit sha."""


class EntryNotFound(LookupError):
    """The repo exists but holds no such file or folder (or the path is hidden or unsafe)."""


@dataclass(frozen=True)
class Entry:
    """One file of a repo: `oid` is the git blob id (of the LFS pointer for LFS files)."""

    path: str
    size: int
    oid: str
    sha256: str | None
    lfs: bool

    @property
    def etag(self) -> str:
        """The ETag the Hub sends: sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs and self.sha256 else self.oid

    @property
    def pointer_size(self) -> int:
        """The size of the git-LFS pointer that stands for the file."""
        return len(lfs_pointer(self.sha256 or "", self.size))


@dataclass(frozen=True)
class RepoView:
    """A repo at one commit: its id, commit sha, files (sorted by path) and gating."""

    repo_id: str
    sha: str
    entries: tuple[Entry, ...]
    gated: bool
    tokens: frozenset[str]
    last_modified: float

    def entry(self, path: str) -> Entry:
        """Given a path inside the repo, return its entry (EntryNotFound if there is none)."""
        for item in self.entries:
            if item.path == path:
                return item
        raise EntryNotFound(f"{self.repo_id} has no file {path!r}")

    def folders(self) -> set[str]:
        """Every folder the file paths imply ("a/b/c.txt" gives "a" and "a/b")."""
        return {p.rsplit("/", i)[0] for p in (e.path for e in self.entries) for i in range(1, p.count("/") + 1)}


def validate_repo_id(repo_id: str) -> str:
    """Return `repo_id` if it is `org/name` with safe characters; RepoNotFound otherwise."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) and ".." not in p for p in parts):
        raise RepoNotFound(f"invalid repo id {repo_id!r}: expected 'org/name' with A-Z a-z 0-9 . _ -")
    return repo_id


def unsafe_part(part: str) -> bool:
    """Whether one path segment could step out of a folder (`..`, empty, backslash, NUL)."""
    return part in ("", ".", "..") or "\\" in part or "\x00" in part


def safe_repo_path(path: str) -> bool:
    """Whether a `/`-separated path inside a repo has no unsafe or hidden part."""
    return not any(unsafe_part(p) or p.startswith(".") for p in path.split("/"))


def split_repo_path(path: str) -> tuple[str, ...]:
    """Return the parts of a path inside a repo; EntryNotFound if any is unsafe or hidden."""
    if not safe_repo_path(path):
        raise EntryNotFound(f"unsafe or hidden path {path!r}")
    return tuple(path.split("/"))


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file that stands for a blob in git."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def file_hashes(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Return a file's (sha256, git blob sha1), reading it once in 4 MiB chunks (`git_hash` would hold it in memory)."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\x00" % os.stat(path).st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def cached_hashes(path: Path) -> tuple[str, str]:
    """`file_hashes`, computed once per (path, size, mtime)."""
    st = path.stat()
    return _hashes(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _hashes(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    return file_hashes(path)


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub would store this file in LFS (weights, or anything over 10 MiB)."""
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_MIN_SIZE


def check_revision(repo_id: str, revision: str, sha: str) -> None:
    """Accept `main` and the repo's full commit sha; RevisionNotFound for anything else."""
    if revision != "main" and not (_COMMIT.match(revision) and revision == sha):
        raise RevisionNotFound(f"{repo_id} has no revision {revision!r} (the hub serves 'main' = {sha})")


def read_json(path: Path) -> Any:
    """A JSON file's content; None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Write a JSON file atomically: readers never see half of it, and writers never share a temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(data, tmp, indent=1)
    os.replace(tmp.name, path)


def read_gate(folder: Path) -> tuple[bool, frozenset[str]]:
    """Whether a repo folder is gated, and the tokens its `.gated` file lets through."""
    marker = folder / GATED_MARKER
    if not marker.is_file():
        return False, frozenset()
    lines = marker.read_text(encoding="utf-8", errors="replace").splitlines()
    return True, frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


class RepoStore:
    """The repos under a root folder, as the Hub protocol describes them (thread-safe; HubError: no root)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise HubError(f"The course hub root {str(path)!r} does not exist or is not a folder. Build the course "
                           "models first (`python -m vllm_course models build`) or pass --root DIR.")
        self.root = path.resolve()

    def repo_dir(self, repo_id: str) -> Path:
        """Return a repo's folder (resolved, inside the root); RepoNotFound otherwise."""
        folder = (self.root / validate_repo_id(repo_id)).resolve()
        if not self._servable(folder) or not folder.is_dir():
            raise RepoNotFound(f"no repo {repo_id!r} under {self.root}")
        return folder

    def file_path(self, repo_id: str, path: str) -> Path:
        """Return the real file of a repo path, never one outside the root (else RepoNotFound, EntryNotFound)."""
        target = self.repo_dir(repo_id).joinpath(*split_repo_path(path)).resolve()
        if not self._servable(target) or not target.is_file():
            raise EntryNotFound(f"{repo_id} has no file {path!r}")
        return target

    def _servable(self, real: Path) -> bool:
        """Whether a resolved path is inside the root with no hidden part (starlette's StaticFiles check)."""
        if os.path.commonpath([self.root, real]) != str(self.root):
            return False
        return not any(part.startswith(".") for part in real.relative_to(self.root).parts)

    def repo_ids(self) -> list[str]:
        """Every valid `org/name` repo folder under the root, sorted."""
        ids = []
        for org in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for repo in sorted(org.iterdir()):
                with contextlib.suppress(RepoNotFound):
                    self.repo_dir(f"{org.name}/{repo.name}")  # a valid, visible folder inside the root
                    ids.append(f"{org.name}/{repo.name}")
        return ids

    def view(self, repo_id: str, revision: str = "main") -> RepoView:
        """Return a repo's files and commit sha at `revision`, `main` or that sha (else RevisionNotFound)."""
        folder = self.repo_dir(repo_id)
        entries = tuple(self._entry(folder, path) for path in self._walk(folder))
        lines = "".join(f"{e.path} {e.sha256}\n" for e in entries)  # sorted by path
        sha = hashlib.sha1(f"{repo_id}\n{lines}".encode()).hexdigest()
        check_revision(repo_id, revision, sha)
        mtimes = [folder.stat().st_mtime] + [(folder / e.path).stat().st_mtime for e in entries]
        return RepoView(repo_id, sha, entries, *read_gate(folder), max(mtimes))

    def _walk(self, folder: Path) -> list[str]:
        """Relative paths of the visible regular files under `folder` (symlinked folders skipped)."""
        out = []
        for dirpath, dirnames, filenames in os.walk(folder):
            base = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (base / d).is_symlink()]
            for name in filenames:
                real = (base / name).resolve()
                if not name.startswith(".") and self._servable(real) and real.is_file():
                    out.append((base / name).relative_to(folder).as_posix())
        return sorted(out)

    def _entry(self, folder: Path, rel: str) -> Entry:
        sha256, oid = cached_hashes(folder / rel)
        size = (folder / rel).stat().st_size
        lfs = is_lfs(rel, size)
        return Entry(rel, size, git_hash(lfs_pointer(sha256, size)) if lfs else oid, sha256, lfs)
