"""Demo and test faults around starlette's `FileResponse`: a slow network and a cut transfer.

`FileResponse` does the HTTP (HEAD, Range GETs answered 206, 416 past the end, If-Range);
`FaultyFile` only wraps the `send` it writes the body through: it sleeps after each chunk to hold
`throttle_bps`, and ends the response short after `cut_after` bytes, as a dropped connection would
(huggingface_hub then resumes with `Range: bytes=N-`).
"""

from __future__ import annotations

import os

import anyio
from starlette.responses import FileResponse
from starlette.types import Message, Receive, Scope, Send


class _Cut(Exception):
    """Raised through `FileResponse` to stop sending once the simulated cut is reached."""


class FaultyFile(FileResponse):
    """A `FileResponse` whose body can be throttled and cut (both off by default)."""

    def __init__(self, path: str | os.PathLike[str], headers: dict[str, str], *,
                 throttle_bps: int | None = None, cut_after: int | None = None) -> None:
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

        try:
            await super().__call__(scope, receive, faulty_send)
        except _Cut:
            pass  # the response ends short: the client sees a connection that closed mid-file
