"""The course hub's request log: what each client asked for, and how many bytes it got.

Lessons use it to show what a load really costs ("the second load downloaded nothing"). Counters
are kept per repo (metadata requests) and per file (full downloads, ranged reads, HEADs, bytes sent,
upstream fetches in mirror mode). Requests to the hub's own `/_course/...` endpoints are not logged.

Kinds of request:
    metadata   GET /api/...                        (model info, tree listings)
    head       HEAD /{repo}/resolve/{rev}/{file}   (what huggingface_hub sends before a download)
    download   GET of a whole file                 (status 200: the file's bytes, all of them)
    range      GET with a Range header             (status 206: part of a file, e.g. a header read)
    error      any 4xx/5xx answer
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RECENT_LIMIT = 500


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


@dataclass(frozen=True)
class HubStats:
    """A snapshot of the request log.

    `metadata` maps repo id to its number of metadata requests; `files` holds per-file counters;
    `recent` the last requests (oldest first, at most 500).

    Example:
        >>> stats = hub.stats().for_repo("course/SmolLM2-135M-Instruct")   # doctest: +SKIP
        >>> stats.full_downloads, stats.ranged_reads                       # doctest: +SKIP
        (0, 2)
    """

    requests: int = 0
    errors: int = 0
    metadata: dict[str, int] = field(default_factory=dict)
    files: tuple[FileStats, ...] = ()
    recent: tuple[RequestRecord, ...] = ()

    @property
    def full_downloads(self) -> int:
        return sum(f.full_downloads for f in self.files)

    @property
    def ranged_reads(self) -> int:
        return sum(f.ranged_reads for f in self.files)

    @property
    def heads(self) -> int:
        return sum(f.heads for f in self.files)

    @property
    def bytes_sent(self) -> int:
        return sum(f.bytes_sent for f in self.files)

    @property
    def metadata_requests(self) -> int:
        return sum(self.metadata.values())

    @property
    def upstream_fetches(self) -> int:
        return sum(f.upstream_fetches for f in self.files)

    def file(self, repo_id: str, path: str) -> FileStats:
        """Given a repo id and a file path, return its counters (all zero if never requested)."""
        for item in self.files:
            if item.repo_id == repo_id and item.path == path:
                return item
        return FileStats(repo_id, path)

    def for_repo(self, repo_id: str) -> HubStats:
        """Given a repo id, return the same snapshot restricted to that repo."""
        recent = tuple(r for r in self.recent if r.repo_id == repo_id)
        return HubStats(
            requests=sum(1 for r in recent),
            errors=sum(1 for r in recent if r.status >= 400),
            metadata={k: v for k, v in self.metadata.items() if k == repo_id},
            files=tuple(f for f in self.files if f.repo_id == repo_id),
            recent=recent,
        )

    def since(self, earlier: HubStats) -> HubStats:
        """Given an earlier snapshot of the same hub, return what happened in between.

        Lessons take a snapshot before a load and subtract it afterwards, so requests other
        notebooks made before do not count (restrict to one repo with `.for_repo()`).

        Raises:
            HubError: a counter went down: the hub was restarted or reset in between.

        Example:
            >>> before = h.stats()                                            # doctest: +SKIP
            >>> llm = LLM(model="course/SmolLM2-135M-Instruct")               # doctest: +SKIP
            >>> h.stats().since(before).for_repo("course/SmolLM2-135M-Instruct").weight_downloads()  # doctest: +SKIP
            1
        """
        counters = ("full_downloads", "ranged_reads", "heads", "bytes_sent", "upstream_fetches")
        files = []
        for now_file in self.files:
            old = earlier.file(now_file.repo_id, now_file.path)
            diff = {name: getattr(now_file, name) - getattr(old, name) for name in counters}
            if any(diff.values()):
                files.append(FileStats(now_file.repo_id, now_file.path, **diff))
        metadata = {repo: n - earlier.metadata.get(repo, 0) for repo, n in self.metadata.items()}
        last = earlier.recent[-1].time if earlier.recent else float("-inf")
        delta = HubStats(
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            metadata={repo: n for repo, n in metadata.items() if n},
            files=tuple(files),
            recent=tuple(r for r in self.recent if r.time > last),
        )
        went_down = [f for f in files if min(getattr(f, name) for name in counters) < 0]
        if delta.requests < 0 or went_down or any(n < 0 for n in metadata.values()):
            from ..errors import HubError

            raise HubError("the hub's counters went down between the two snapshots (it was restarted or "
                           "reset in between): take the earlier snapshot again.")
        return delta

    def weight_downloads(self) -> int:
        """Full downloads of weight files (.safetensors, .bin, .pt, .pth, .gguf)."""
        suffixes = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
        return sum(f.full_downloads for f in self.files if f.path.endswith(suffixes))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what `GET /_course/stats` returns), totals included."""
        out = asdict(self)
        out["totals"] = {
            "full_downloads": self.full_downloads,
            "ranged_reads": self.ranged_reads,
            "heads": self.heads,
            "metadata_requests": self.metadata_requests,
            "bytes_sent": self.bytes_sent,
            "upstream_fetches": self.upstream_fetches,
        }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubStats:
        """Rebuild a snapshot from `to_dict()` output (e.g. the JSON of `/_course/stats`)."""
        return cls(
            requests=int(data.get("requests", 0)),
            errors=int(data.get("errors", 0)),
            metadata={str(k): int(v) for k, v in data.get("metadata", {}).items()},
            files=tuple(FileStats(**f) for f in data.get("files", [])),
            recent=tuple(RequestRecord(**r) for r in data.get("recent", [])),
        )


class RequestLog:
    """Thread-safe counters the server updates once per answered request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every counter and record."""
        with self._lock:
            self._requests = 0
            self._errors = 0
            self._metadata: dict[str, int] = {}
            self._files: dict[tuple[str, str], FileStats] = {}
            self._recent: deque[RequestRecord] = deque(maxlen=RECENT_LIMIT)

    def add(self, record: RequestRecord) -> None:
        """Count one answered request."""
        with self._lock:
            self._requests += 1
            self._recent.append(record)
            if record.status >= 400:
                self._errors += 1
            if record.kind == "metadata" and record.repo_id:
                self._metadata[record.repo_id] = self._metadata.get(record.repo_id, 0) + 1
            if record.repo_id and record.file and record.kind in ("head", "download", "range"):
                key = (record.repo_id, record.file)
                old = self._files.get(key, FileStats(*key))
                self._files[key] = replace(
                    old,
                    heads=old.heads + (record.kind == "head"),
                    full_downloads=old.full_downloads + (record.kind == "download"),
                    ranged_reads=old.ranged_reads + (record.kind == "range"),
                    bytes_sent=old.bytes_sent + record.bytes_sent,
                )

    def add_upstream_fetch(self, repo_id: str, path: str) -> None:
        """Count one file fetched from the upstream hub (mirror mode)."""
        with self._lock:
            old = self._files.get((repo_id, path), FileStats(repo_id, path))
            self._files[(repo_id, path)] = replace(old, upstream_fetches=old.upstream_fetches + 1)

    def snapshot(self) -> HubStats:
        """Return the counters as they are now (a frozen copy)."""
        with self._lock:
            return HubStats(
                requests=self._requests,
                errors=self._errors,
                metadata=dict(self._metadata),
                files=tuple(sorted(self._files.values(), key=lambda f: (f.repo_id, f.path))),
                recent=tuple(self._recent),
            )


def now() -> float:
    """Wall-clock time for records (seconds since the epoch)."""
    return time.time()


class LoggedApp:
    """ASGI wrapper that counts each answered request (status, bytes really sent) in the log.

    Handlers describe the request in `request.state` (kind, repo_id, file); a 206 answer is a
    ranged read, any 4xx/5xx an error. Requests to `/_course/...` are not counted.
    """

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_course/"):
            await self.app(scope, receive, send)
            return
        seen = {"status": 0, "bytes": 0}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        request = Request(scope)
        request.state.kind = "metadata"  # what the handlers do not describe (also /api/agent-harnesses)
        try:
            await self.app(scope, receive, counting_send)
        finally:
            state = request.state
            kind = "error" if seen["status"] >= 400 else "range" if seen["status"] == 206 else state.kind
            self.log.add(RequestRecord(
                time=now(), method=scope["method"], path=scope["path"], status=seen["status"], kind=kind,
                repo_id=getattr(state, "repo_id", None), file=getattr(state, "file", None),
                range=request.headers.get("range") if kind == "range" else None,
                bytes_sent=seen["bytes"] if kind in ("download", "range") else 0,
            ))
