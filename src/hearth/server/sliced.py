"""A large response body sent in slices, so the event loop answers other requests in between."""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SLICE_BYTES = 256 * 1024


class SlicedResponse(Response):
    """A complete body (Content-Length known) written in SLICE_BYTES pieces, yielding to the
    event loop after each.

    Many GET /v1/models requests share one scan and receive their body at the same moment:
    written whole, 50 bodies of 3 MB are one burst of ~50 ms of copying in which nothing else
    is answered. Slices are memoryviews of the one shared body (no copies); uvicorn writes any
    bytes-like body.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        view = memoryview(self.body)
        for start in range(0, len(view), SLICE_BYTES):
            piece = view[start : start + SLICE_BYTES]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
