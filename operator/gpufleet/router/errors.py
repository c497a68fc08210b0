"""The router's one exception hierarchy, translated at the edge into OpenAI's error JSON
``{"error": {"message", "type", "param", "code"}}``::

    RouterError
    ├── BadRequest        400 invalid_request_error
    ├── Unauthorized      401 authentication_error
    ├── Forbidden         403 permission_error      (class_not_allowed)
    ├── NotFound          404 not_found_error       (model_not_found)
    │   └── RouteNotFound 404 invalid_request_error (unknown_route)
    ├── MethodNotAllowed  405 invalid_request_error (Allow)
    ├── PayloadTooLarge   413 invalid_request_error
    ├── UnsupportedMediaType 415 invalid_request_error
    ├── RateLimited       429 rate_limit_error      (Retry-After)
    ├── Unavailable       503 service_unavailable   (Retry-After)
    ├── UpstreamFailed    502 upstream_error
    ├── UpstreamTimeout   504 upstream_timeout
    └── InternalError     500 internal_error        (a defect; the message says no more)

Messages name the field or header at fault and what is accepted; they never echo an
API key or prompt text.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar


class RouterError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    code: ClassVar[str | None] = None

    def __init__(
        self, message: str, *, param: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, dict[str, object]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}

    def sse_event(self) -> bytes:
        """The error as one SSE event, for a stream that cannot finish."""
        return b"data: " + json.dumps(self.body()).encode() + b"\n\n"


class BadRequest(RouterError):
    status, type, code = 400, "invalid_request_error", None


class Unauthorized(RouterError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(RouterError):
    status, type, code = 403, "permission_error", "class_not_allowed"


class NotFound(RouterError):
    status, type, code = 404, "not_found_error", "model_not_found"


class RouteNotFound(NotFound):
    status, type, code = 404, "invalid_request_error", "unknown_route"


class MethodNotAllowed(RouterError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class PayloadTooLarge(RouterError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class UnsupportedMediaType(RouterError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class RateLimited(RouterError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class Unavailable(RouterError):
    status, type, code = 503, "service_unavailable", "no_capacity"


class UpstreamFailed(RouterError):
    status, type, code = 502, "upstream_error", None


class UpstreamTimeout(RouterError):
    status, type, code = 504, "upstream_timeout", None


class InternalError(RouterError):
    status, type, code = 500, "internal_error", None
