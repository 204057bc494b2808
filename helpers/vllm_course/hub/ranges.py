"""Byte ranges: parse an HTTP Range header and stream one slice of a file.

huggingface_hub resumes a cut download with `Range: bytes=N-`, and vLLM reads a safetensors header
with a small ranged GET; both need a 206 answer with exactly those bytes.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

CHUNK = 1024 * 1024


def parse_range(value: str | None, size: int) -> tuple[int, int, bool] | None:
    """Given a Range header and a file size, return (start, end inclusive, partial?).

    `bytes=a-b`, `bytes=a-` and `bytes=-n` give a partial answer; no header, or one this hub does
    not handle (several ranges, other units), gives the whole file; None if unsatisfiable.
    """
    whole = (0, size - 1, False)
    if not value:
        return whole
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec or "-" not in spec:
        return whole
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return whole
    if start >= size or start > end or start < 0:
        return None
    return start, end, True


class FileSlice(Response):
    """Streams `length` bytes of a file from `start`, in 1 MiB chunks, never the whole file in memory."""

    def __init__(self, path: Path, start: int, length: int, status: int, headers: dict[str, str],
                 throttle_bps: int | None, cut_after: int | None) -> None:
        super().__init__(status_code=status, headers=headers)
        self.path, self.start, self.length = path, start, length
        self.throttle_bps, self.cut_after = throttle_bps, cut_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        chunk = CHUNK if not self.throttle_bps else max(1024, min(CHUNK, self.throttle_bps // 10))
        left, sent = self.length, 0
        if left <= 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            while left > 0:
                size = min(chunk, left)
                if self.cut_after is not None:
                    size = min(size, self.cut_after - sent)
                    if size <= 0:
                        return  # simulated network cut: the response ends short, the client must resume
                data = await anyio.to_thread.run_sync(fh.read, size)
                if not data:
                    return
                left -= len(data)
                sent += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": left > 0})
                if self.throttle_bps:
                    await anyio.sleep(len(data) / self.throttle_bps)
