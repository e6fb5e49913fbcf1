"""A limit on request bodies that answers in the service's JSON error format.

(Starlette's own ``max_body_size`` answers a plain-text 413 whatever the app's error handlers
say.) A body whose Content-Length is over the limit is refused before it is read; a chunked
body is refused as soon as the bytes received pass it.
"""

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a chunked body passes the limit; an HTTPException so that
    FastAPI's form parsing passes it on to the 413 handler instead of turning it into a 400."""

    def __init__(self):
        super().__init__(413, "request body too large")


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a 413.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest body accepted (file plus multipart wrapping).
        refuse: makes the 413 JSON answer (the app's error format, counted in the metrics).
    """

    def __init__(self, app, max_bytes: int, refuse):
        self.app, self.max_bytes, self.refuse = app, max_bytes, refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            response: JSONResponse = self.refuse()
            return await response(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)
