"""The service's errors: each one a status, a kind (counted in /metrics) and a one-line message.

Every error leaves the server as ``{"error": "one line", "kind": "bad_image"}``: a client can
show the line as it is and a script can branch on the kind."""
from __future__ import annotations

from typing import Dict, Optional


class ApiError(Exception):
    """A request the service refuses: ``status`` (4xx, or 503 when overloaded), ``kind`` (a short
    name such as ``bad_image``), ``message`` (one line saying what is wrong and how to fix it)."""

    def __init__(self, status: int, kind: str, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.kind, self.headers = int(status), kind, headers or {}
        self.message = " ".join(str(message).split())  # one line, whatever the cause printed


def bad_request(kind: str, message: str) -> ApiError:
    """A 400 of ``kind``."""
    return ApiError(400, kind, message)


def not_found(kind: str, message: str) -> ApiError:
    """A 404 of ``kind``."""
    return ApiError(404, kind, message)


def error_body(kind: str, message: str) -> Dict[str, str]:
    """The JSON body of every error response."""
    return {"error": " ".join(str(message).split()), "kind": kind}
