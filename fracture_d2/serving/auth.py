"""Optional bearer-token access to ``/v1/*`` (health, readiness and metrics stay open for
orchestrators and scrapers)."""

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ServiceError


def token_checker(token: str | None):
    """A FastAPI dependency that lets a request through only with ``Bearer <token>``.

    Args:
        token: the expected token; None or empty lets every request through.
    """
    # auto_error=False: answer a missing header with the service's own 401 body, not FastAPI's
    bearer = HTTPBearer(auto_error=False, description="the token the server was started with")

    def check(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not token:
            return
        given = creds.credentials if creds is not None else ""
        # compare_digest: the time taken does not tell how much of a guess was right
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise ServiceError(
                401,
                "unauthorized",
                "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                {"WWW-Authenticate": "Bearer"},
            )

    return check
