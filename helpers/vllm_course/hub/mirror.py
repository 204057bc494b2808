"""Where the server gets a repo from: a plain folder under the root as it is, any other repo from the upstream
(pull-through): its listing kept in `<root>/<org>/<name>/.mirror/manifest.json`, each file fetched on its first GET,
checked against the upstream's hash, then served from there, also with the upstream down or no `--upstream`."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from ..errors import HubError
from .log import RequestLog
from .repos import (Entry, EntryNotFound, RepoNotFound, RepoStore, RepoView, RevisionNotFound, cached_hashes,
                    check_revision, read_json, safe_repo_path, validate_repo_id, write_json)

MANIFEST = Path(".mirror") / "manifest.json"
REFRESH_SECONDS = 30.0  # how long a cached listing of `main` is trusted before the upstream is asked again


def create_root(root: str | os.PathLike[str], hint: str = "Pass a writable folder as --root.") -> Path:
    """Create a mirror's root folder if missing (a mirror starts empty) and return it; HubError if it cannot."""
    folder = Path(root).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HubError(f"Cannot create the mirror's root folder {str(folder)!r}: {exc}. {hint}") from exc
    return folder


class UpstreamError(RuntimeError):
    """The upstream hub could not be reached, or answered something unusable."""


class GatedUpstream(PermissionError):
    """The upstream refused a file because the repo is gated."""


class Mirror:
    """Which files, which sha, which bytes of every repo the hub serves (`timeout`: seconds per upstream call)."""

    def __init__(self, store: RepoStore, upstream: str | None, log: RequestLog, timeout: float = 10.0) -> None:
        self.store, self.log, self.timeout = store, log, timeout
        self.upstream = upstream.rstrip("/") if upstream else None
        self._checked: dict[str, float] = {}
        # proxies from the environment are for the outside world, never for a hub on this machine
        host = httpx.URL(self.upstream).host if self.upstream else ""
        self._trust_env = host not in ("127.0.0.1", "localhost", "::1")
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._listing: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}

    async def view(self, repo_id: str, revision: str) -> RepoView:
        """A repo's files and commit sha, from the root or the upstream (UpstreamError: only the upstream
        could know the repo, and it is unreachable)."""
        folder = self.store.root / validate_repo_id(repo_id)
        manifest_file = folder / MANIFEST
        listing = any(key[0] == repo_id for key in self._listing)  # its folder exists before its manifest
        if folder.is_dir() and not manifest_file.is_file() and not listing:
            return await anyio.to_thread.run_sync(self.store.view, repo_id, revision)
        if self.upstream is None and not manifest_file.is_file():
            raise RepoNotFound(f"no repo {repo_id!r} under {self.store.root} (and no --upstream to ask)")
        manifest = read_json(manifest_file)
        # a commit never changes; `main` is asked again after REFRESH_SECONDS
        age = time.monotonic() - self._checked.get(repo_id, -1e9)
        stale = manifest is None or (revision != manifest["sha"] and age > REFRESH_SECONDS)
        if self.upstream and stale:
            try:
                manifest = await self._fetch_manifest_once(repo_id, revision)
            except UpstreamError:
                if manifest is None:
                    raise
                self._checked[repo_id] = time.monotonic()  # serve the cache; ask again after REFRESH_SECONDS
        if manifest is None:
            raise RepoNotFound(f"no repo {repo_id!r} under {self.store.root} or upstream")
        check_revision(repo_id, revision, manifest["sha"])
        entries = [Entry(e["path"], int(e["size"]), e["oid"], (e.get("lfs") or {}).get("oid"), bool(e.get("lfs")))
                   for e in manifest["entries"] if safe_repo_path(e["path"])]  # whatever the upstream lists
        entries.sort(key=lambda e: e.path)
        return RepoView(repo_id, manifest["sha"], tuple(entries), False, frozenset(), time.time())

    async def _fetch_manifest_once(self, repo_id: str, revision: str) -> dict[str, Any]:
        """Fetch the manifest, or join the fetch already under way: a class's first requests, all at
        once, cost the upstream one listing (each their own made a cold upstream time out: 502s)."""
        key = (repo_id, revision)
        if (task := self._listing.get(key)) is None:
            task = asyncio.ensure_future(anyio.to_thread.run_sync(self._fetch_manifest, repo_id, revision))
            self._listing[key] = task
            # forget it once done; read its exception, which every waiter may have stopped awaiting
            task.add_done_callback(lambda t: (self._listing.pop(key, None), t.cancelled() or t.exception()))
        return await asyncio.shield(task)  # a client hanging up does not cancel the others' fetch

    def _fetch_manifest(self, repo_id: str, revision: str) -> dict[str, Any]:
        with httpx.Client(base_url=self.upstream or "", timeout=self.timeout, follow_redirects=True,
                          trust_env=self._trust_env) as client:
            info = _get(client, f"/api/models/{repo_id}/revision/{quote(revision, safe='')}").json()
            entries: list[dict[str, Any]] = []
            url: str | None = f"/api/models/{repo_id}/tree/{info['sha']}?recursive=true"
            while url:
                response = _get(client, url)
                entries += [e for e in response.json() if e.get("type") == "file"]
                url = response.links.get("next", {}).get("url")
        manifest = {"repo_id": repo_id, "sha": info["sha"], "gated": bool(info.get("gated")), "entries": entries}
        write_json(self.store.root / repo_id / MANIFEST, manifest)
        self._checked[repo_id] = time.monotonic()
        return manifest

    async def file(self, view: RepoView, entry: Entry) -> Path:
        """The local file with an entry's bytes, fetched from the upstream first if missing or outdated (once)."""
        if (self.store.root / view.repo_id / MANIFEST).is_file():
            async with self._locks.setdefault((view.repo_id, entry.path), asyncio.Lock()):
                if not await anyio.to_thread.run_sync(self._has, view, entry):
                    if self.upstream is None:
                        raise EntryNotFound(f"{view.repo_id}/{entry.path} was never mirrored and no --upstream is set")
                    await anyio.to_thread.run_sync(self._fetch_file, view, entry)
                    self.log.add_upstream_fetch(view.repo_id, entry.path)
        return self.store.file_path(view.repo_id, entry.path)

    def _has(self, view: RepoView, entry: Entry) -> bool:
        """Whether the repo's folder holds a file with the entry's size and hash (sha256 for LFS, else git blob id)."""
        try:
            path = self.store.file_path(view.repo_id, entry.path)
        except (RepoNotFound, EntryNotFound):
            return False
        if path.stat().st_size != entry.size:
            return False
        sha256, blob = cached_hashes(path)
        return sha256 == entry.sha256 if entry.lfs else blob == entry.oid

    def _fetch_file(self, view: RepoView, entry: Entry) -> None:
        """Download one file into the repo's folder with huggingface_hub's `hf_hub_download` (no token: a gated
        file stays refused, as to any client of this hub), then check its bytes against the listing."""
        from huggingface_hub import errors, hf_hub_download
        try:
            path = Path(hf_hub_download(view.repo_id, entry.path, revision=view.sha, endpoint=self.upstream,
                                        token=False, local_dir=self.store.root / view.repo_id,
                                        etag_timeout=self.timeout))
        except errors.GatedRepoError as exc:
            raise GatedUpstream(f"upstream: {view.repo_id} is gated") from exc
        except OSError as exc:  # huggingface_hub's HTTP and network errors, a full disk
            raise UpstreamError(f"could not fetch {entry.path} of {view.repo_id} from {self.upstream}: {exc}") from exc
        if not self._has(view, entry):
            path.unlink()
            raise UpstreamError(f"{self.upstream} sent {view.repo_id}/{entry.path} with bytes that do not match its "
                                "listing (size or hash)")


def _get(client: httpx.Client, url: str) -> httpx.Response:
    """GET from the upstream; its errors as the lookup errors the hub answers with (else UpstreamError)."""
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream {client.base_url} did not answer {url}: {exc}") from exc
    if response.status_code >= 400:
        code = response.headers.get("X-Error-Code", "")
        errors = {"RevisionNotFound": RevisionNotFound, "EntryNotFound": EntryNotFound, "GatedRepo": GatedUpstream,
                  "RepoNotFound": RepoNotFound}
        error = errors.get(code, RepoNotFound if response.status_code in (401, 404) else UpstreamError)
        raise error(f"upstream: {url}: {response.status_code} {code}".strip())
    return response
