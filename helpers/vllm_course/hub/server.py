"""The course hub's HTTP server (Starlette on uvicorn): the Hub protocol as huggingface_hub 2.4 and vLLM 0.32 use
it (`HubApp.asgi`), GET and HEAD only. Errors are JSON with the `X-Error-Code` huggingface_hub maps to its errors.
File bodies are starlette's `FileResponse` (Range 206, 416, If-Range), which `FaultyFile` can slow down or cut
(huggingface_hub then resumes with `Range: bytes=N-`)."""

from __future__ import annotations

import contextlib
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
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .log import LoggedApp, RequestLog
from .mirror import GatedUpstream, Mirror, UpstreamError
from .repos import (Entry, EntryNotFound, RepoNotFound, RepoStore, RepoView, RevisionNotFound, read_gate,
                    split_repo_path, unsafe_part, write_json)

SERVICE = "vllm-course-hub"
# What huggingface_hub's `utils/_detect_agent.py` reads from /api/agent-harnesses: no known harness.
AGENT_HARNESSES = {"standardEnvVars": ["AI_AGENT", "AGENT"], "harnesses": {}}
# Lookup errors -> (status, X-Error-Code), as the real Hub answers them.
ERRORS: dict[type[Exception], tuple[int, str]] = {
    RepoNotFound: (404, "RepoNotFound"), RevisionNotFound: (404, "RevisionNotFound"),
    EntryNotFound: (404, "EntryNotFound"), GatedUpstream: (403, "GatedRepo"), UpstreamError: (502, ""),
}


@dataclass(frozen=True)
class HubConfig:
    """What one hub serves and how; `throttle_bps` and `cut_after_bytes` fake a slow or flaky network."""

    root: Path  # folder of <org>/<name>/ repos
    host: str = "127.0.0.1"  # loopback: nothing else can reach it
    port: int = 0  # 0 picks a free one
    upstream: str | None = None  # base URL of a hub to mirror (pull-through), or None
    throttle_bps: int | None = None  # cap each file transfer at this many bytes per second
    cut_after_bytes: int | None = None  # cut the first full download of each file after this many bytes


class HubApp:
    """The request handlers; each describes its request for the log in `request.state`."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.store = RepoStore(config.root)  # HubError if the root is missing
        self.log = RequestLog()
        self.mirror = Mirror(self.store, config.upstream, self.log)
        self._cut_done: set[tuple[str, str]] = set()

    def asgi(self) -> LoggedApp:
        """The ASGI application: routes, lookup errors as the Hub's JSON errors, the request log."""
        routes = [Route("/_course/health", self.health), Route("/_course/stats", self.stats),
                  Route("/api/agent-harnesses", self.agent_harnesses), Route("/api/whoami-v2", self.whoami),
                  Route("/{path:path}", self.dispatch)]
        return LoggedApp(Starlette(routes=routes, exception_handlers={e: _lookup_error for e in ERRORS}), self.log)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": SERVICE, "root": str(self.store.root), "pid": os.getpid(),
                             "upstream": self.config.upstream})

    async def stats(self, request: Request) -> Response:
        """The counters; `?reset=1` resets them after reading."""
        snapshot = self.log.snapshot()
        if request.query_params.get("reset", "").lower() in ("1", "true", "yes"):
            self.log.reset()
        return JSONResponse(snapshot.to_dict())

    async def agent_harnesses(self, request: Request) -> Response:
        return JSONResponse(AGENT_HARNESSES)  # a 404 would show in every `hf` command and in `hub watch`

    async def whoami(self, request: Request) -> Response:
        """`hf auth login`'s token check: a course user for a token some `.gated` file lists, else 401."""
        if _bearer(request) not in await anyio.to_thread.run_sync(self._gate_tokens):
            return _error(401, "", "Invalid credentials in Authorization header: the course hub knows only "
                                   "the tokens listed in its repos' .gated files")
        auth = {"type": "access_token", "accessToken": {"displayName": "course", "role": "read"}}
        return JSONResponse({"type": "user", "id": "course-learner", "name": "course-learner",
                             "fullname": "Course learner", "orgs": [], "auth": auth})

    def _gate_tokens(self) -> set[str]:
        return set().union(*(read_gate(self.store.repo_dir(rid))[1] for rid in self.store.repo_ids()))

    async def dispatch(self, request: Request) -> Response:
        """Route a GET/HEAD by its raw path (so `%2F` and `%2e%2e` are judged as sent)."""
        parts = _raw_segments(request.scope)
        if parts is None:
            return _error(404, "", "malformed or unsafe path")
        if parts[:2] == ["api", "models"]:
            rest = parts[2:]
            if not rest:
                return await self.list_models(request)
            if len(rest) < 2:
                raise RepoNotFound("expected /api/models/{org}/{name}")
            repo_id = request.state.repo_id = f"{rest[0]}/{rest[1]}"
            action, tail = (rest[2], rest[3:]) if len(rest) > 2 else ("revision", ["main"])
            if action == "revision" and tail:
                return await self.model_info(request, repo_id, "/".join(tail))
            if action == "tree" and tail:
                return await self.tree(request, repo_id, tail[0], "/".join(tail[1:]))
        elif len(parts) >= 5 and parts[2] == "resolve":
            return await self.resolve(request, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        return _error(404, "", f"no such endpoint: {request.url.path}")

    async def list_models(self, request: Request) -> Response:
        """`[{id, author, ...}]` of the repos under the root (`?author=` and `?search=` filter)."""
        author = request.query_params.get("author")
        search = (request.query_params.get("search") or "").lower()
        ids = await anyio.to_thread.run_sync(self.store.repo_ids)
        return JSONResponse([{"id": rid, "modelId": rid, "author": rid.split("/")[0], "private": False, "tags": [],
                              "downloads": 0, "likes": 0}
                             for rid in ids if author in (None, rid.split("/")[0]) and search in rid.lower()])

    async def model_info(self, request: Request, repo_id: str, revision: str) -> Response:
        """The model info JSON (siblings get sizes with `?blobs=1`)."""
        view = await self.mirror.view(repo_id, revision)
        blobs = _flag(request, "blobs")
        when = _iso(view.last_modified)
        info: dict[str, Any] = {
            "_id": view.sha[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
            "sha": view.sha, "lastModified": when, "createdAt": when, "private": False,
            "gated": "manual" if view.gated else False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": [_sibling(e, blobs) for e in view.entries], "usedStorage": sum(e.size for e in view.entries)}
        return JSONResponse(info | await anyio.to_thread.run_sync(self._config_summary, view))

    def _config_summary(self, view: RepoView) -> dict[str, Any]:
        try:
            config = json.loads(self.store.file_path(view.repo_id, "config.json").read_text(encoding="utf-8"))
        except (LookupError, OSError, ValueError):
            return {}
        keys = ("architectures", "model_type", "quantization_config")
        return {"library_name": "transformers", "config": {k: config[k] for k in keys if k in config}}

    async def tree(self, request: Request, repo_id: str, revision: str, path: str) -> Response:
        """A folder's entries (all below it with `?recursive=1`, with `lastCommit` with `?expand=1`)."""
        view = await self.mirror.view(repo_id, revision)
        recursive = _flag(request, "recursive")
        prefix = "/".join(split_repo_path(path)) + "/" if path else ""
        folders = view.folders()
        if path and prefix[:-1] not in folders:
            raise EntryNotFound(f"{repo_id} has no folder {path!r} at {revision}")
        extra = {"lastCommit": {"id": view.sha, "title": "Course hub snapshot", "date": _iso(view.last_modified)}} \
            if _flag(request, "expand") else {}
        items = [{"type": "directory", "oid": hashlib.sha1(f"{view.sha}:{d}".encode()).hexdigest(), "size": 0,
                  "path": d} for d in sorted(folders)] + [_tree_file(e) for e in view.entries]
        return JSONResponse([i | extra for i in items if i["path"].startswith(prefix)
                             and (recursive or "/" not in i["path"][len(prefix):])])

    async def resolve(self, request: Request, repo_id: str, revision: str, path: str) -> Response:
        """A file's headers (HEAD) or bytes (GET)."""
        head = request.method == "HEAD"
        request.state.kind, request.state.repo_id, request.state.file = "head" if head else "download", repo_id, path
        view = await self.mirror.view(repo_id, revision)
        commit = {"X-Repo-Commit": view.sha}
        token = _bearer(request)
        if view.gated and token not in view.tokens:
            return _error(403 if token else 401, "GatedRepo",
                          f"{repo_id} is gated: pass a token listed in its .gated file", commit)
        try:
            entry = view.entry("/".join(split_repo_path(path)))
        except EntryNotFound as exc:
            return _error(404, "EntryNotFound", str(exc), commit)
        headers = commit | {"ETag": f'"{entry.etag}"', "Content-Length": str(entry.size), "Accept-Ranges": "bytes",
                            "Content-Type": "application/octet-stream",
                            "Content-Disposition": f'inline; filename="{entry.path.rsplit("/", 1)[-1]}"'}
        if entry.lfs:
            headers |= {"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)}
        if head:
            return Response(headers=headers)
        local = await self.mirror.file(view, entry)
        first_full = "range" not in request.headers and (repo_id, path) not in self._cut_done
        cut = self.config.cut_after_bytes if first_full else None
        if cut is not None:
            self._cut_done.add((repo_id, path))
        return FaultyFile(local, headers, throttle_bps=self.config.throttle_bps, cut_after=cut)


def _raw_segments(scope: Scope) -> list[str] | None:
    text = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
    try:
        parts = [unquote(p, encoding="utf-8", errors="strict") for p in text.split("/")]
    except UnicodeDecodeError:
        return None
    if parts[0] or any(unsafe_part(p) or p.startswith("/") for p in parts[1:]):
        return None
    return parts[1:]


def _error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    headers = {"X-Error-Message": message.encode("ascii", "replace").decode()[:300]}
    headers |= ({"X-Error-Code": code} if code else {}) | (extra or {})
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _lookup_error(request: Request, exc: Exception) -> Response:
    status, code = ERRORS[type(exc)]
    hint = ". The hub has no cached copy; start the upstream or pass no --upstream." if status == 502 else ""
    return _error(status, code, f"{exc}{hint}")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true")


def _sibling(entry: Entry, blobs: bool) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": entry.path}
    lfs = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
    return {"rfilename": entry.path, "size": entry.size, "blobId": entry.oid} | ({"lfs": lfs} if entry.lfs else {})


def _tree_file(entry: Entry) -> dict[str, Any]:
    lfs = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    item = {"type": "file", "oid": entry.oid, "size": entry.size, "path": entry.path}
    return item | ({"lfs": lfs} if entry.lfs else {})


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _Cut(Exception):
    """Raised through `FileResponse` to stop sending once the simulated cut is reached."""


class FaultyFile(FileResponse):
    """A `FileResponse` whose body can be throttled and cut (both off by default)."""

    def __init__(self, path: Path, headers: dict[str, str], *, throttle_bps: int | None = None,
                 cut_after: int | None = None) -> None:
        super().__init__(path, headers=headers)
        self.throttle_bps, self.cut_after = throttle_bps, cut_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0

        async def faulty_send(message: Message) -> None:
            nonlocal sent
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if self.cut_after is not None and sent + len(body) > self.cut_after:
                await send({"type": "http.response.body", "body": body[: self.cut_after - sent], "more_body": True})
                raise _Cut
            sent += len(body)
            await send(message)
            if self.throttle_bps and body:
                await anyio.sleep(len(body) / self.throttle_bps)

        with contextlib.suppress(_Cut):  # the response ends short: the client sees a connection that closed mid-file
            await super().__call__(scope, receive, faulty_send)


def serve(config: HubConfig, ready_file: Path | None = None, parent_pid: int | None = None) -> None:
    """Run the hub until Ctrl-C or SIGTERM (HubError: no root; OSError: port taken). `ready_file` gets `{"port": ...,
    "pid": ...}` once the socket listens; with `parent_pid` the hub stops once that process is gone."""
    import uvicorn
    from huggingface_hub.utils import disable_progress_bars
    disable_progress_bars()  # the mirror's downloads: the hub's log holds requests, not progress bars
    app = HubApp(config).asgi()
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    port = sock.getsockname()[1]
    print(f"course hub: serving {config.root} on http://{config.host}:{port}"
          + (f" (mirroring {config.upstream})" if config.upstream else ""), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    if ready_file is not None:
        write_json(ready_file, {"port": port, "pid": os.getpid()})
    if parent_pid is not None:
        threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()
    server.run(sockets=[sock])


def _exit_with(parent_pid: int) -> None:
    """SIGTERM this process (uvicorn's graceful stop) once `parent_pid` is no longer its parent."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
