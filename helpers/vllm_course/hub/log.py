"""The hub's request log: what each client asked for and how many bytes it got (`/_course/...` is not logged).
Kinds: `metadata` (GET /api/...), `head` (HEAD of a file), `download` (a whole file, 200), `range` (a Range GET
answered 206), `error` (any 4xx/5xx)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import HubError
from ..formats import WEIGHT_FILES

RECENT_LIMIT = 500
COUNTERS = ("full_downloads", "ranged_reads", "heads", "bytes_sent", "upstream_fetches")


@dataclass(frozen=True)
class FileStats:
    """Counters of one file of one repo."""

    repo_id: str
    path: str
    full_downloads: int = 0
    ranged_reads: int = 0
    heads: int = 0
    bytes_sent: int = 0
    upstream_fetches: int = 0


@dataclass(frozen=True)
class RequestRecord:
    """One request as the hub answered it."""

    time: float
    method: str
    path: str
    status: int
    kind: str
    repo_id: str | None = None
    file: str | None = None
    range: str | None = None
    bytes_sent: int = 0


def _total(name: str) -> property:
    return property(lambda self: sum(getattr(f, name) for f in self.files), doc=f"{name} over all files")


@dataclass(frozen=True)
class HubStats:
    """A snapshot of the request log: per repo (`metadata`), per file (`files`), last 500 oldest first (`recent`)."""

    requests: int = 0
    errors: int = 0
    metadata: dict[str, int] = field(default_factory=dict)
    files: tuple[FileStats, ...] = ()
    recent: tuple[RequestRecord, ...] = ()

    full_downloads = _total("full_downloads")
    ranged_reads = _total("ranged_reads")
    heads = _total("heads")
    bytes_sent = _total("bytes_sent")
    upstream_fetches = _total("upstream_fetches")

    @property
    def metadata_requests(self) -> int:
        """Requests for repo metadata (model info, tree), over all repos."""
        return sum(self.metadata.values())

    def file(self, repo_id: str, path: str) -> FileStats:
        """Return one file's counters (all zero if it was never requested)."""
        return next((f for f in self.files if (f.repo_id, f.path) == (repo_id, path)), FileStats(repo_id, path))

    def for_repo(self, repo_id: str) -> HubStats:
        """The same snapshot restricted to one repo."""
        recent = tuple(r for r in self.recent if r.repo_id == repo_id)
        return HubStats(len(recent), sum(r.status >= 400 for r in recent),
                        {k: v for k, v in self.metadata.items() if k == repo_id},
                        tuple(f for f in self.files if f.repo_id == repo_id), recent)

    def since(self, earlier: HubStats) -> HubStats:
        """What happened between an earlier snapshot of the same hub and this one (HubError if a counter went down)."""
        requests = self.requests - earlier.requests
        files, went_down = [], requests < 0
        for now in self.files:
            old = earlier.file(now.repo_id, now.path)
            diff = {name: getattr(now, name) - getattr(old, name) for name in COUNTERS}
            went_down |= min(diff.values()) < 0
            if any(diff.values()):
                files.append(FileStats(now.repo_id, now.path, **diff))
        metadata = {repo: n - earlier.metadata.get(repo, 0) for repo, n in self.metadata.items()}
        if went_down or any(n < 0 for n in metadata.values()):
            raise HubError("the hub's counters went down between the two snapshots (it was restarted or "
                           "reset in between): take the earlier snapshot again.")
        last = earlier.recent[-1].time if earlier.recent else float("-inf")
        return HubStats(requests, self.errors - earlier.errors, {r: n for r, n in metadata.items() if n},
                        tuple(files), tuple(r for r in self.recent if r.time > last))

    def weight_downloads(self) -> int:
        """Full downloads of weight files (.safetensors, .bin, .pt, .pth, .gguf)."""
        return sum(f.full_downloads for f in self.files if f.path.endswith(WEIGHT_FILES))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what `GET /_course/stats` returns), totals included."""
        names = ("full_downloads", "ranged_reads", "heads", "metadata_requests", "bytes_sent", "upstream_fetches")
        return asdict(self) | {"totals": {name: getattr(self, name) for name in names}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubStats:
        """Rebuild a snapshot from `to_dict()` output (the JSON of `/_course/stats`)."""
        return cls(int(data.get("requests", 0)), int(data.get("errors", 0)),
                   {str(k): int(v) for k, v in data.get("metadata", {}).items()},
                   tuple(FileStats(**f) for f in data.get("files", [])),
                   tuple(RequestRecord(**r) for r in data.get("recent", [])))


class RequestLog:
    """Thread-safe counters the server updates once per answered request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = self._errors = 0
            self._metadata: dict[str, int] = {}
            self._files: dict[tuple[str, str], FileStats] = {}
            self._recent: deque[RequestRecord] = deque(maxlen=RECENT_LIMIT)

    def add(self, record: RequestRecord) -> None:
        """Count one answered request."""
        with self._lock:
            self._requests += 1
            self._errors += record.status >= 400
            self._recent.append(record)
            if record.kind == "metadata" and record.repo_id:
                self._metadata[record.repo_id] = self._metadata.get(record.repo_id, 0) + 1
            counter = {"head": "heads", "download": "full_downloads", "range": "ranged_reads"}.get(record.kind)
            if record.repo_id and record.file and counter:
                self._count(record.repo_id, record.file, **{counter: 1}, bytes_sent=record.bytes_sent)

    def add_upstream_fetch(self, repo_id: str, path: str) -> None:
        """Count one file fetched from the upstream hub (mirror mode)."""
        with self._lock:
            self._count(repo_id, path, upstream_fetches=1)

    def _count(self, repo_id: str, path: str, **add: int) -> None:
        old = self._files.get((repo_id, path), FileStats(repo_id, path))
        self._files[(repo_id, path)] = replace(old, **{k: getattr(old, k) + int(v) for k, v in add.items()})

    def snapshot(self) -> HubStats:
        """The counters as they are now (a frozen copy)."""
        with self._lock:
            files = tuple(sorted(self._files.values(), key=lambda f: (f.repo_id, f.path)))
            return HubStats(self._requests, self._errors, dict(self._metadata), files, tuple(self._recent))


class LoggedApp:
    """ASGI wrapper that logs each answered request as its handler describes it in `request.state`."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_course/"):
            return await self.app(scope, receive, send)
        seen = {"status": 0, "bytes": 0}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        request = Request(scope)
        request.state.kind = "metadata"  # what no handler describes (/api/agent-harnesses, ...)
        try:
            await self.app(scope, receive, counting_send)
        finally:
            state, status = request.state, seen["status"]
            kind = "error" if status >= 400 else "range" if status == 206 else state.kind
            self.log.add(RequestRecord(time.time(), scope["method"], scope["path"], status, kind,
                                       getattr(state, "repo_id", None), getattr(state, "file", None),
                                       request.headers.get("range") if kind == "range" else None,
                                       seen["bytes"] if kind in ("download", "range") else 0))
