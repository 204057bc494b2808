"""The course hub's view of its root folder: repos laid out as `<root>/<org>/<name>/<files>`.

Everything the server says about a repo comes from here: the file list, each file's git blob id
and sha256, which files are "LFS" (weights), the repo's commit sha, and the safe path of a file on
disk. Nothing outside the root is ever returned: every path is resolved and checked against it.

The commit sha is derived from the repo id and its sorted `(path, sha256)` list: the same repo
with the same files gives the same sha on every machine, and, as on the real Hub, two repos never
share one (`HFCacheInfo.delete_revisions(hash)` relies on that).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.utils.sha import git_hash

from ..errors import HubError

# Files served as git-LFS objects (like the real Hub does for weights): by suffix, or by size.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024

# A file named like this in a repo folder marks the repo gated; its non-empty lines are the tokens
# that may download it anyway (`Authorization: Bearer <token>`).
GATED_MARKER = ".gated"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HASH_CHUNK = 4 * 1024 * 1024


class RepoNotFound(LookupError):
    """No repo with that id under the root (or the id is malformed)."""


class RevisionNotFound(LookupError):
    """The repo exists but the revision is neither `main` nor its commit sha."""


class EntryNotFound(LookupError):
    """The repo exists but holds no such file or folder (or the path is hidden or unsafe)."""


@dataclass(frozen=True)
class Entry:
    """One file of a repo, as the Hub protocol describes it.

    `oid` is the git blob id: of the content for small files, of the LFS pointer for LFS files.
    `sha256` is None when the file is not LFS and its sha256 was not needed.
    """

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
        """Given a path inside the repo, return its entry.

        Raises:
            EntryNotFound: no such file.
        """
        for item in self.entries:
            if item.path == path:
                return item
        raise EntryNotFound(f"{self.repo_id} has no file {path!r}")

    def folders(self) -> set[str]:
        """Every folder path implied by the file paths ("a/b/c.txt" gives "a" and "a/b")."""
        out: set[str] = set()
        for item in self.entries:
            parts = item.path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return out


def validate_repo_id(repo_id: str) -> str:
    """Given a repo id, return it if it is `org/name` with safe characters.

    Raises:
        RepoNotFound: anything else (`..`, a third part, hidden names, odd characters).
    """
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) and ".." not in p for p in parts):
        raise RepoNotFound(f"invalid repo id {repo_id!r}: expected 'org/name' with A-Z a-z 0-9 . _ -")
    return repo_id


def split_repo_path(path: str) -> tuple[str, ...]:
    """Given a path inside a repo (`/`-separated), return its parts if every part is safe.

    Raises:
        EntryNotFound: empty, `.`/`..` parts, hidden (dot) names, backslashes or NUL bytes.
    """
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", "..") or part.startswith(".") or "\\" in part or "\x00" in part:
            raise EntryNotFound(f"unsafe or hidden path {path!r}")
    return parts


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file that stands for a blob in git."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def commit_sha(repo_id: str, pairs: Iterable[tuple[str, str]]) -> str:
    """The repo's commit sha: sha1 over the repo id and the sorted `path sha256` lines.

    Stable (same repo, same files: same sha) and unique per repo, like the real Hub's.
    """
    text = f"{repo_id}\n" + "".join(f"{path} {digest}\n" for path, digest in sorted(pairs))
    return hashlib.sha1(text.encode()).hexdigest()


def file_hashes(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Given a file, return its (sha256, git blob sha1), reading it once in 4 MiB chunks.

    The two names the Hub gives a file's bytes: an LFS file's etag and oid (sha256), and a small
    file's git blob id (`git hash-object`, as huggingface_hub's `utils.sha.git_hash`, which needs
    the whole file in memory). The one hashing function of the course.
    """
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\x00" % os.stat(path).st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub would store this file in LFS (weights, or anything over 10 MB)."""
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_MIN_SIZE


class RepoStore:
    """Scans a root folder of repos and answers what the Hub protocol asks about them.

    File hashes are cached by (path, size, mtime), so a repo is hashed once per change.
    Thread-safe: the server calls it from worker threads.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Args:
            root: folder holding `<org>/<name>/` repos.

        Raises:
            HubError: the root does not exist or is not a folder.
        """
        path = Path(root).expanduser()
        if not path.is_dir():
            raise HubError(
                f"The course hub root {str(path)!r} does not exist or is not a folder. Build the course "
                "models first (`python -m vllm_course models build`) or pass --root DIR."
            )
        self.root = path.resolve()
        self._hashes: dict[tuple[str, int, int], tuple[str, str]] = {}
        self._lock = threading.Lock()

    # -- paths ---------------------------------------------------------------------------------

    def repo_dir(self, repo_id: str) -> Path:
        """Given a repo id, return its folder (resolved, inside the root).

        Raises:
            RepoNotFound: bad id, no such folder, or a folder that resolves outside the root.
        """
        validate_repo_id(repo_id)
        folder = (self.root / repo_id).resolve()
        if not self._servable(folder) or not folder.is_dir():
            raise RepoNotFound(f"no repo {repo_id!r} under {self.root}")
        return folder

    def file_path(self, repo_id: str, path: str) -> Path:
        """Given a repo id and a path inside it, return the real file, never one outside the root.

        Raises:
            RepoNotFound: no such repo.
            EntryNotFound: unsafe, hidden, missing, not a regular file, or resolving outside the root.
        """
        folder = self.repo_dir(repo_id)
        parts = split_repo_path(path)
        target = folder.joinpath(*parts).resolve()
        if not self._servable(target) or not target.is_file():
            raise EntryNotFound(f"{repo_id} has no file {path!r}")
        return target

    def _inside(self, path: Path) -> bool:
        return os.path.commonpath([str(self.root), str(path)]) == str(self.root)

    def _servable(self, real: Path) -> bool:
        """A resolved path may be served if it is inside the root and no part of it is hidden."""
        if not self._inside(real):
            return False
        return not any(part.startswith(".") for part in real.relative_to(self.root).parts)

    # -- listing -------------------------------------------------------------------------------

    def repo_ids(self) -> list[str]:
        """Every valid `org/name` repo folder under the root, sorted."""
        found = []
        for org in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for repo in sorted(p for p in org.iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    self.repo_dir(f"{org.name}/{repo.name}")
                except RepoNotFound:
                    continue
                found.append(f"{org.name}/{repo.name}")
        return found

    def view(self, repo_id: str, revision: str = "main") -> RepoView:
        """Given a repo id and a revision, return the repo's files and commit sha.

        Args:
            repo_id: `org/name`.
            revision: `main`, or the full 40-character commit sha the hub reported.

        Raises:
            RepoNotFound: no such repo.
            RevisionNotFound: any other revision.
        """
        folder = self.repo_dir(repo_id)
        entries = tuple(self._entry(folder, path) for path in self._walk(folder))
        sha = commit_sha(repo_id, ((e.path, e.sha256 or "") for e in entries))
        check_revision(repo_id, revision, sha)
        gated, tokens = read_gate(folder)
        mtimes = [folder.stat().st_mtime] + [(folder / e.path).stat().st_mtime for e in entries]
        return RepoView(repo_id, sha, entries, gated, tokens, max(mtimes))

    def _walk(self, folder: Path) -> list[str]:
        """Relative paths of the visible regular files under `folder` that stay inside the root."""
        out = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath)
            for d in list(dirnames):  # a symlinked folder is listed only if it stays inside the repo
                if (base / d).is_symlink():
                    dirnames.remove(d)
            for name in filenames:
                if name.startswith("."):
                    continue
                real = (base / name).resolve()
                if self._servable(real) and real.is_file():
                    out.append((base / name).relative_to(folder).as_posix())
        return sorted(out)

    def _entry(self, folder: Path, rel: str) -> Entry:
        path = folder / rel
        st = path.stat()
        sha256, oid = self._hash(path, st.st_size, st.st_mtime_ns)
        if is_lfs(rel, st.st_size):
            return Entry(rel, st.st_size, git_hash(lfs_pointer(sha256, st.st_size)), sha256, True)
        return Entry(rel, st.st_size, oid, sha256, False)

    def file_hashes(self, path: Path) -> tuple[str, str]:
        """Given a file, return its (sha256, git blob id), from the cache when unchanged."""
        st = path.stat()
        return self._hash(path, st.st_size, st.st_mtime_ns)

    def _hash(self, path: Path, size: int, mtime_ns: int) -> tuple[str, str]:
        """(sha256, git blob sha1) of a file, cached by (path, size, mtime)."""
        key = (str(path), size, mtime_ns)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        result = file_hashes(path)
        with self._lock:
            self._hashes[key] = result
        return result


def check_revision(repo_id: str, revision: str, sha: str) -> None:
    """Accept `main` and the repo's full commit sha; anything else is not found.

    Raises:
        RevisionNotFound: any other revision.
    """
    if revision == "main" or (_COMMIT.match(revision) and revision == sha):
        return
    raise RevisionNotFound(f"{repo_id} has no revision {revision!r} (the hub serves 'main' = {sha})")


def read_gate(folder: Path) -> tuple[bool, frozenset[str]]:
    """Whether a repo folder is gated, and the tokens its `.gated` file grants access to."""
    marker = folder / GATED_MARKER
    if not marker.is_file():
        return False, frozenset()
    lines = marker.read_text(encoding="utf-8", errors="replace").splitlines()
    return True, frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))
