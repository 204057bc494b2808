"""The course hub's HTTP server: the part of the Hugging Face Hub protocol that
huggingface_hub 2.4 and vLLM 0.32 use, served from a folder (Starlette on uvicorn).

Endpoints (repo ids are `org/name`; revisions are `main` or the full commit sha):

    GET       /api/models                                  list the repos (id, author, gated)
    GET       /api/models/{repo}[/revision/{rev}]          model info: id, sha, siblings, gated
    GET       /api/models/{repo}/tree/{rev}[/{path}]       listing (?recursive=1&expand=1)
    HEAD/GET  /{repo}/resolve/{rev}/{file}                 file bytes (starlette's FileResponse: Range GETs 206)
    GET       /api/agent-harnesses                         huggingface_hub's agent registry: an empty one
    GET       /api/whoami-v2                               the token's user (`hf auth login`): 200 for a token
                                                           some repo's `.gated` file lists, else 401
    GET       /_course/health                              {"status": "ok", "root": ..., "pid": ...}
    GET       /_course/stats[?reset=1]                     request counters (reset after reading)

Only GET and HEAD are allowed (405 otherwise). Errors are 404 JSON with `X-Error-Code:
RepoNotFound | RevisionNotFound | EntryNotFound`, 401/403 `GatedRepo` for gated repos.
Every path is resolved against the root; nothing outside it is served. Handlers describe each
request for the log in `request.state` (kind, repo_id, file).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from .faults import FaultyFile
from .log import LoggedApp, RequestLog
from .mirror import GatedUpstream, Mirror, UpstreamError
from .repos import (Entry, EntryNotFound, RepoNotFound, RepoStore, RepoView, RevisionNotFound, read_gate,
                    split_repo_path)

SERVICE = "vllm-course-hub"
# What huggingface_hub's `utils/_detect_agent.py` reads from `/api/agent-harnesses` (it names the
# AI agent driving the client in its user-agent): the standard variables, and no known harness.
AGENT_HARNESSES = {"standardEnvVars": ["AI_AGENT", "AGENT"], "harnesses": {}}


@dataclass(frozen=True)
class HubConfig:
    """What one hub serves and how.

    Args:
        root: folder of `<org>/<name>/` repos.
        host: interface to bind (loopback by default: nothing else can reach it).
        port: TCP port; 0 picks a free one.
        upstream: base URL of a hub to mirror (pull-through), or None.
        throttle_bps: demo/test setting: limit each file transfer to this many bytes per second.
        cut_after_bytes: demo/test setting: abort the first full download of each file after this
            many bytes (a flaky network), so clients must resume.
    """

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    upstream: str | None = None
    throttle_bps: int | None = None
    cut_after_bytes: int | None = None


class HubApp:
    """The hub's request handlers, one method per step: parse, look up, answer."""

    def __init__(self, config: HubConfig) -> None:
        """Raises:
        HubError: the root folder is missing.
        """
        self.config = config
        self.store = RepoStore(config.root)
        self.log = RequestLog()
        self.mirror = Mirror(self.store, config.upstream, self.log)
        self._cut_done: set[tuple[str, str]] = set()

    def asgi(self) -> LoggedApp:
        """Return the ASGI application (routing plus the request log)."""
        routes = [
            Route("/_course/health", self.health),
            Route("/_course/stats", self.stats),
            Route("/api/agent-harnesses", self.agent_harnesses),
            Route("/api/whoami-v2", self.whoami),
            Route("/{path:path}", self.dispatch),
        ]
        return LoggedApp(Starlette(routes=routes), self.log)

    # -- course endpoints ----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "service": SERVICE, "root": str(self.store.root), "pid": os.getpid(),
             "upstream": self.config.upstream}
        )

    async def stats(self, request: Request) -> Response:
        """Given a request, return the counters; `?reset=1` resets them after reading."""
        snapshot = self.log.snapshot()
        if request.query_params.get("reset", "").lower() in ("1", "true", "yes"):
            self.log.reset()
        return JSONResponse(snapshot.to_dict())

    # -- Hub protocol --------------------------------------------------------------------------

    async def agent_harnesses(self, request: Request) -> Response:
        """Answer huggingface_hub's once-a-day registry fetch (a 404 would show in `hub watch`)."""
        return JSONResponse(AGENT_HARNESSES)

    async def whoami(self, request: Request) -> Response:
        """Answer `hf auth login`'s token check: a course user for a token some `.gated` file lists, else 401."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        known = await anyio.to_thread.run_sync(self._gate_tokens)
        if token not in known:
            return _error(401, "", "Invalid credentials in Authorization header: the course hub knows only "
                                   "the tokens listed in its repos' .gated files")
        name = "course-learner"
        return JSONResponse({"type": "user", "id": name, "name": name, "fullname": "Course learner",
                             "orgs": [], "auth": {"type": "access_token",
                                                  "accessToken": {"displayName": "course", "role": "read"}}})

    def _gate_tokens(self) -> set[str]:
        tokens: set[str] = set()
        for repo_id in self.store.repo_ids():
            tokens |= read_gate(self.store.repo_dir(repo_id))[1]
        return tokens

    async def dispatch(self, request: Request) -> Response:
        """Given any GET/HEAD request, route it by its raw path (so `%2F` and `%2e%2e` are seen as sent)."""
        parts = _raw_segments(request.scope)
        try:
            if parts is None:
                return _error(404, "", "malformed or unsafe path")
            if parts[:2] == ["api", "models"]:
                return await self._api(request, parts[2:])
            if len(parts) >= 5 and parts[2] == "resolve":
                return await self.resolve(request, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            return _error(404, "", f"no such endpoint: {request.url.path}")
        except RepoNotFound as exc:
            return _error(404, "RepoNotFound", str(exc))
        except RevisionNotFound as exc:
            return _error(404, "RevisionNotFound", str(exc))
        except EntryNotFound as exc:
            return _error(404, "EntryNotFound", str(exc))
        except GatedUpstream as exc:
            return _error(403, "GatedRepo", str(exc))
        except UpstreamError as exc:
            return _error(502, "", f"{exc}. The hub has no cached copy; start the upstream or pass no --upstream.")

    async def _api(self, request: Request, rest: list[str]) -> Response:
        request.state.kind = "metadata"
        if not rest:
            return await self.list_models(request)
        if len(rest) < 2:
            raise RepoNotFound("expected /api/models/{org}/{name}")
        repo_id = f"{rest[0]}/{rest[1]}"
        request.state.repo_id = repo_id
        tail = rest[2:]
        if not tail:
            return await self.model_info(request, repo_id, "main")
        if tail[0] == "revision" and len(tail) >= 2:
            return await self.model_info(request, repo_id, "/".join(tail[1:]))
        if tail[0] == "tree" and len(tail) >= 2:
            return await self.tree(request, repo_id, tail[1], "/".join(tail[2:]))
        return _error(404, "", f"no such endpoint: {request.url.path}")

    async def list_models(self, request: Request) -> Response:
        """Return `[{id, author, ...}]` for the repos under the root (`?author=` and `?search=` filter)."""
        author = request.query_params.get("author")
        search = (request.query_params.get("search") or "").lower()
        ids = await anyio.to_thread.run_sync(self.store.repo_ids)
        return JSONResponse(
            [
                {"id": rid, "modelId": rid, "author": rid.split("/")[0], "private": False, "tags": [],
                 "downloads": 0, "likes": 0}
                for rid in ids
                if (author is None or rid.split("/")[0] == author) and search in rid.lower()
            ]
        )

    async def model_info(self, request: Request, repo_id: str, revision: str) -> Response:
        """Given a repo and revision, return the model info JSON (siblings get sizes with `?blobs=1`)."""
        view = await self.mirror.view(repo_id, revision)
        blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
        when = _iso(view.last_modified)
        siblings = [_sibling(e, blobs) for e in view.entries]
        info: dict[str, Any] = {
            "_id": view.sha[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
            "sha": view.sha, "lastModified": when, "createdAt": when, "private": False,
            "gated": "manual" if view.gated else False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings, "usedStorage": sum(e.size for e in view.entries),
        }
        info.update(await anyio.to_thread.run_sync(self._config_summary, view))
        return JSONResponse(info)

    def _config_summary(self, view: RepoView) -> dict[str, Any]:
        """`config` and `library_name` from the repo's config.json, like the Hub shows them."""
        try:
            path = self.store.file_path(view.repo_id, "config.json")
            config = json.loads(path.read_text(encoding="utf-8"))
        except (LookupError, OSError, ValueError):
            return {}
        keys = ("architectures", "model_type", "quantization_config")
        return {"library_name": "transformers", "config": {k: config[k] for k in keys if k in config}}

    async def tree(self, request: Request, repo_id: str, revision: str, path: str) -> Response:
        """Given a repo, revision and folder, return its entries (all below it with `?recursive=1`)."""
        view = await self.mirror.view(repo_id, revision)
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        expand = request.query_params.get("expand", "").lower() in ("1", "true")
        prefix = "/".join(split_repo_path(path)) + "/" if path else ""
        folders = view.folders()
        if path and prefix[:-1] not in folders:
            raise EntryNotFound(f"{repo_id} has no folder {path!r} at {revision}")
        commit = {"id": view.sha, "title": "Course hub snapshot", "date": _iso(view.last_modified)}
        out: list[dict[str, Any]] = []
        for folder in sorted(folders):
            if _listed(folder, prefix, recursive):
                item = {"type": "directory", "oid": _tree_oid(view.sha, folder), "size": 0, "path": folder}
                out.append(item | ({"lastCommit": commit} if expand else {}))
        for entry in view.entries:
            if _listed(entry.path, prefix, recursive):
                out.append(_tree_file(entry) | ({"lastCommit": commit} if expand else {}))
        return JSONResponse(out)

    async def resolve(self, request: Request, repo_id: str, revision: str, path: str) -> Response:
        """Given a repo, revision and file, answer HEAD with its headers and GET with its bytes."""
        head = request.method == "HEAD"
        request.state.kind, request.state.repo_id, request.state.file = "head" if head else "download", repo_id, path
        view = await self.mirror.view(repo_id, revision)
        gate = _gate_status(view, request.headers.get("authorization", ""))
        if gate:
            return _error(gate, "GatedRepo", f"{repo_id} is gated: pass a token listed in its .gated file",
                          {"X-Repo-Commit": view.sha})
        try:
            entry = view.entry("/".join(split_repo_path(path)))
        except EntryNotFound as exc:
            return _error(404, "EntryNotFound", str(exc), {"X-Repo-Commit": view.sha})
        headers = _file_headers(view, entry)
        if head:
            return Response(status_code=200, headers=headers)
        local = await self.mirror.file(view, entry)
        cut = None
        if self.config.cut_after_bytes is not None and "range" not in request.headers \
                and (repo_id, path) not in self._cut_done:
            self._cut_done.add((repo_id, path))
            cut = self.config.cut_after_bytes
        return FaultyFile(local, headers, throttle_bps=self.config.throttle_bps, cut_after=cut)


# -- helpers: parsing and building answers ---------------------------------------------------


def _raw_segments(scope: Scope) -> list[str] | None:
    """The request path split on `/` *before* decoding, each part decoded; None if any part is unsafe."""
    raw = scope.get("raw_path") or scope["path"].encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    if not text.startswith("/"):
        return None
    try:
        parts = [unquote(p, encoding="utf-8", errors="strict") for p in text[1:].split("/")]
    except UnicodeDecodeError:
        return None
    for part in parts:
        if part in ("", ".", "..") or "\\" in part or "\x00" in part or part.startswith("/"):
            return None
    return parts


def _error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    headers = {"X-Error-Message": message.encode("ascii", "replace").decode()[:300]}
    if code:
        headers["X-Error-Code"] = code
    headers.update(extra or {})
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _file_headers(view: RepoView, entry: Entry) -> dict[str, str]:
    headers = {
        "X-Repo-Commit": view.sha,
        "ETag": f'"{entry.etag}"',
        "Content-Length": str(entry.size),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'inline; filename="{entry.path.rsplit("/", 1)[-1]}"',
    }
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.etag}"'
        headers["X-Linked-Size"] = str(entry.size)
    return headers


def _gate_status(view: RepoView, authorization: str) -> int:
    """0 if the request may read a file; 401 without a token, 403 with a wrong one, for gated repos."""
    if not view.gated:
        return 0
    token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
    if not token:
        return 401
    return 0 if token in view.tokens else 403


def _sibling(entry: Entry, blobs: bool) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": entry.path}
    item: dict[str, Any] = {"rfilename": entry.path, "size": entry.size, "blobId": entry.oid}
    if entry.lfs:
        item["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
    return item


def _tree_file(entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": entry.path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


def _listed(path: str, prefix: str, recursive: bool) -> bool:
    return path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])


def _tree_oid(sha: str, folder: str) -> str:
    return hashlib.sha1(f"{sha}:{folder}".encode()).hexdigest()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# -- running it ------------------------------------------------------------------------------


def serve(config: HubConfig, ready_file: Path | None = None, parent_pid: int | None = None) -> None:
    """Run the hub in the foreground until interrupted (Ctrl-C or SIGTERM).

    Args:
        config: what to serve and where.
        ready_file: if given, `{"port": ..., "pid": ...}` is written there once the socket listens.
        parent_pid: if given, the hub stops by itself once that process is gone (a private hub
            of a notebook kernel or test run does not outlive it).

    Raises:
        HubError: the root folder is missing.
        OSError: the port is taken.
    """
    import uvicorn

    app = HubApp(config).asgi()
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    port = sock.getsockname()[1]
    print(f"course hub: serving {config.root} on http://{config.host}:{port}"
          + (f" (mirroring {config.upstream})" if config.upstream else ""), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}), encoding="utf-8")
        os.replace(tmp, ready_file)
    if parent_pid is not None:
        threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()
    server.run(sockets=[sock])


def _exit_with(parent_pid: int) -> None:
    """Send this process SIGTERM (uvicorn's graceful stop) once `parent_pid` is no longer its parent."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
