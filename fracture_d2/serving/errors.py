"""Error answers: every refusal is JSON ``{"error": kind, "detail": one line}`` with the right
HTTP status, and is counted by kind in ``/metrics``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class ServiceError(Exception):
    """A request the service refuses: HTTP status, error kind and a one-line detail."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if loc == "body.file" and err.get("type") == "missing":
            parts.append(
                "no file in the multipart field 'file' "
                "(send the image as multipart/form-data, e.g. curl -F file=@image.png)"
            )
        else:
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def too_large_detail(max_upload_bytes: int) -> str:
    """The detail of a 413 for a body over the limit (the file name is not known yet)."""
    return (
        f"the request body is over the upload limit of {max_upload_bytes} bytes "
        "(send a smaller file, or start the server with a larger --max-upload-mb)"
    )


def install_error_handlers(app: FastAPI, count, max_upload_bytes: int):
    """Answer every error as JSON and call ``count(kind)`` for each.

    Args:
        app: the app.
        count: called with the error kind of every error answer (metrics).
        max_upload_bytes: the upload limit, named in the answer to an over-large body.

    Returns:
        A function making the JSON answer ``(status, kind, detail, headers=None)``.
    """

    def answer(status: int, kind: str, detail: str, headers=None) -> JSONResponse:
        count(kind)
        return JSONResponse({"error": kind, "detail": detail}, status, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError):
        return answer(exc.status, exc.kind, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        return answer(422, "invalid_request", _validation_detail(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        detail = str(exc.detail)
        if exc.status_code == 413:  # the body limit, before the file was parsed
            detail = too_large_detail(max_upload_bytes)
        elif exc.status_code in (404, 405):
            detail = f"{request.method} {request.url.path}: {detail} (see /docs)"
        return answer(exc.status_code, kind, detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        logger.exception("%s %s failed", request.method, request.url.path)
        return answer(500, "internal", f"{type(exc).__name__}: {exc} (see the server log)")

    return answer
