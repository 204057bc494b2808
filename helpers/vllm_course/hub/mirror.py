"""Where the server gets a repo from: the root folder, or (mirror mode) a pull-through upstream.

A repo that exists under the root as a plain folder is served as it is. Any other repo is looked up
on the upstream hub (another course hub, or the real Hub): its listing is cached as a manifest in
`<root>/<org>/<name>/.mirror/manifest.json` and each file is fetched the first time a client GETs
it, checked against the upstream's hash, and stored under the root. Later requests are served
locally, also while the upstream is down, and a hub started without `--upstream` keeps serving
what an earlier run mirrored. A mirror's root may start missing: `create_root` makes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from ..errors import HubError
from .log import RequestLog
from .repos import (
    Entry,
    EntryNotFound,
    RepoNotFound,
    RepoStore,
    RepoView,
    RevisionNotFound,
    check_revision,
    file_hashes,
    split_repo_path,
    validate_repo_id,
)

MANIFEST = Path(".mirror") / "manifest.json"
# How long a cached listing of `main` is trusted before the upstream is asked again (seconds).
REFRESH_SECONDS = 30.0


def create_root(root: str | os.PathLike[str]) -> Path:
    """Given a mirror's root folder, create it (and its parents) if missing; return it.

    A mirror starts empty and fills its root as clients ask, so, unlike a plain hub's root, it
    need not exist beforehand (`hub serve --upstream URL --root R` calls this).

    Raises:
        HubError: the folder cannot be created (a file in the way, no permission).
    """
    folder = Path(root).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HubError(f"Cannot create the mirror's root folder {str(folder)!r}: {exc}. "
                       "Pass a writable folder as --root.") from exc
    return folder


class UpstreamError(RuntimeError):
    """The upstream hub could not be reached, or answered something unusable."""


class GatedUpstream(PermissionError):
    """The upstream refused a file because the repo is gated."""


class Mirror:
    """Answers "which files, which sha, which bytes" for every repo the hub serves."""

    def __init__(self, store: RepoStore, upstream: str | None, log: RequestLog, timeout: float = 10.0) -> None:
        """Args:
        store: the root folder's repos.
        upstream: base URL of the upstream hub, or None (serve the root, and earlier mirrors, only).
        log: the request log, to count upstream fetches.
        timeout: seconds to wait for the upstream before falling back to the cache.
        """
        self.store = store
        self.upstream = upstream.rstrip("/") if upstream else None
        self.log = log
        self.timeout = timeout
        self._checked: dict[str, float] = {}
        # proxies from the environment are for the outside world, never for a hub on this machine
        host = httpx.URL(self.upstream).host if self.upstream else ""
        self._trust_env = host not in ("127.0.0.1", "localhost", "::1")
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._listing: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}

    # -- metadata ------------------------------------------------------------------------------

    async def view(self, repo_id: str, revision: str) -> RepoView:
        """Given a repo id and revision, return its files and commit sha.

        Raises:
            RepoNotFound, RevisionNotFound: as the root or the upstream says.
            UpstreamError: a repo only the upstream could know, and the upstream is unreachable.
        """
        validate_repo_id(repo_id)
        folder = self.store.root / repo_id
        manifest_file = folder / MANIFEST
        listing = any(key[0] == repo_id for key in self._listing)  # its folder exists before its manifest
        if folder.is_dir() and not manifest_file.is_file() and not listing:
            return await anyio.to_thread.run_sync(self.store.view, repo_id, revision)
        if self.upstream is None and not manifest_file.is_file():
            raise RepoNotFound(f"no repo {repo_id!r} under {self.store.root} (and no --upstream to ask)")
        manifest = _read_json(manifest_file)
        if self.upstream and self._needs_refresh(repo_id, revision, manifest):
            try:
                manifest = await self._fetch_manifest_once(repo_id, revision)
            except UpstreamError:
                if manifest is None:
                    raise
                self._checked[repo_id] = time.monotonic()  # serve the cache; ask again after REFRESH_SECONDS
        if manifest is None:
            raise RepoNotFound(f"no repo {repo_id!r} under {self.store.root} or upstream")
        check_revision(repo_id, revision, manifest["sha"])
        return _view_from_manifest(repo_id, manifest)

    def _needs_refresh(self, repo_id: str, revision: str, manifest: dict[str, Any] | None) -> bool:
        if manifest is None:
            return True
        if revision == manifest["sha"]:
            return False  # a commit never changes
        return time.monotonic() - self._checked.get(repo_id, -1e9) > REFRESH_SECONDS

    async def _fetch_manifest_once(self, repo_id: str, revision: str) -> dict[str, Any]:
        """Fetch the manifest, or join the fetch already under way: a class's first requests, all at
        once, cost the upstream one listing (each their own made a cold upstream time out: 502s)."""
        key = (repo_id, revision)
        task = self._listing.get(key)
        if task is None:
            task = asyncio.ensure_future(anyio.to_thread.run_sync(self._fetch_manifest, repo_id, revision))
            self._listing[key] = task
            # forget it once done; read its exception, which every waiter may have stopped awaiting
            task.add_done_callback(lambda t: (self._listing.pop(key, None), t.cancelled() or t.exception()))
        return await asyncio.shield(task)  # a client hanging up does not cancel the others' fetch

    def _fetch_manifest(self, repo_id: str, revision: str) -> dict[str, Any]:
        """Ask the upstream for a repo's sha and recursive file listing; cache them under the root."""
        with httpx.Client(base_url=self.upstream or "", timeout=self.timeout, follow_redirects=True,
                          trust_env=self._trust_env) as client:
            info = _get_json(client, f"/api/models/{repo_id}/revision/{quote(revision, safe='')}")
            sha = info["sha"]
            entries: list[dict[str, Any]] = []
            url: str | None = f"/api/models/{repo_id}/tree/{sha}?recursive=true"
            while url:
                response = _get(client, url)
                entries += [e for e in response.json() if e.get("type") == "file"]
                url = response.links.get("next", {}).get("url")
        manifest = {"repo_id": repo_id, "sha": sha, "gated": bool(info.get("gated")), "entries": entries}
        folder = self.store.root / repo_id
        _write_json(folder / MANIFEST, manifest)
        self._checked[repo_id] = time.monotonic()
        return manifest

    # -- bytes ---------------------------------------------------------------------------------

    async def file(self, view: RepoView, entry: Entry) -> Path:
        """Given a repo view and one of its entries, return the local file with exactly those bytes.

        In mirror mode a missing or outdated file is fetched from the upstream first (once, even
        when several clients ask at the same time).

        Raises:
            EntryNotFound: the file is not under the root and no upstream can provide it.
            UpstreamError: the upstream is unreachable or sent bytes that do not match the listing.
        """
        folder = self.store.root / view.repo_id
        if not (folder / MANIFEST).is_file():
            return self.store.file_path(view.repo_id, entry.path)
        lock = self._locks.setdefault((view.repo_id, entry.path), asyncio.Lock())
        async with lock:
            if await anyio.to_thread.run_sync(self._has, view, entry):
                return self.store.file_path(view.repo_id, entry.path)
            if self.upstream is None:
                raise EntryNotFound(f"{view.repo_id}/{entry.path} was never mirrored and no --upstream is set")
            await anyio.to_thread.run_sync(self._fetch_file, view, entry)
            self.log.add_upstream_fetch(view.repo_id, entry.path)
            return self.store.file_path(view.repo_id, entry.path)

    def _has(self, view: RepoView, entry: Entry) -> bool:
        """Whether the root already holds this entry's bytes (size and hash match)."""
        try:
            path = self.store.file_path(view.repo_id, entry.path)
        except (RepoNotFound, EntryNotFound):
            return False
        return path.stat().st_size == entry.size and _matches(self.store, path, entry)

    def _fetch_file(self, view: RepoView, entry: Entry) -> None:
        """Download one file from the upstream into the root, atomically, after checking its hash."""
        folder = self.store.root / view.repo_id
        target = folder.joinpath(*split_repo_path(entry.path))
        tmp_dir = folder / ".mirror" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        url = f"{self.upstream}/{view.repo_id}/resolve/{view.sha}/{quote(entry.path)}"
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out, httpx.stream(
                "GET", url, timeout=self.timeout, follow_redirects=True, trust_env=self._trust_env
            ) as r:
                _raise_for_upstream(r, view.repo_id)
                for chunk in r.iter_bytes(1024 * 1024):
                    out.write(chunk)
            if not _matches(None, Path(tmp_name), entry):
                raise UpstreamError(f"{url} sent bytes that do not match the upstream listing (size or hash)")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"could not fetch {url}: {exc}") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)


def _view_from_manifest(repo_id: str, manifest: dict[str, Any]) -> RepoView:
    entries = []
    for e in manifest["entries"]:
        lfs = e.get("lfs")
        try:
            split_repo_path(e["path"])
        except EntryNotFound:
            continue  # hidden or unsafe paths are never served, whatever the upstream lists
        entries.append(Entry(e["path"], int(e["size"]), e["oid"], lfs["oid"] if lfs else None, bool(lfs)))
    entries.sort(key=lambda e: e.path)
    return RepoView(repo_id, manifest["sha"], tuple(entries), False, frozenset(), time.time())


def _matches(store: RepoStore | None, path: Path, entry: Entry) -> bool:
    """Whether a file has the entry's size and hash (sha256 for LFS, git blob id otherwise)."""
    if path.stat().st_size != entry.size:
        return False
    sha256, blob = store.file_hashes(path) if store is not None else file_hashes(path)
    return sha256 == entry.sha256 if entry.lfs else blob == entry.oid


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream {client.base_url} did not answer {url}: {exc}") from exc
    _raise_for_upstream(response, url)
    return response


def _get_json(client: httpx.Client, url: str) -> dict[str, Any]:
    return _get(client, url).json()


def _raise_for_upstream(response: httpx.Response, what: str) -> None:
    """Turn the upstream's error answers into the hub's own lookup errors."""
    if response.status_code < 400:
        return
    code = response.headers.get("X-Error-Code", "")
    message = f"upstream: {what}: {response.status_code} {code}".strip()
    if code == "RevisionNotFound":
        raise RevisionNotFound(message)
    if code == "EntryNotFound":
        raise EntryNotFound(message)
    if code == "GatedRepo":
        raise GatedUpstream(message)
    if code == "RepoNotFound" or response.status_code in (401, 404):
        raise RepoNotFound(message)
    raise UpstreamError(message)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per writer: concurrent first requests each fetch and write the manifest
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
