"""One error type for the whole domain, rendered as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, ClassVar


def N_(message: str) -> str:
    """Marks a problem's title or detail written outside an error class for the problems'
    catalog (``patron.web.catalog``), which translates answers by ``Accept-Language``."""
    return message


class PatronError(Exception):
    """A business error with a stable machine-readable ``code`` and an HTTP status."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    # Errors whose side effects must survive (e.g. a counted wrong PIN) set this;
    # the request boundary then commits instead of rolling back.
    keep_side_effects: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://patron.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        body.update(self.extra)
        return body


class NotFound(PatronError):
    status = 404
    code = "not_found"
    title = "Not found"


class Unauthenticated(PatronError):
    status = 401
    code = "unauthenticated"
    title = "Missing or invalid API key"


class Forbidden(PatronError):
    status = 403
    code = "forbidden"
    title = "This key's role may not do this"


class Conflict(PatronError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidInput(PatronError):
    status = 422
    code = "invalid_input"
    title = "Invalid input"


class BodyNotAllowed(InvalidInput):
    code = "body_not_allowed"
    title = "This endpoint takes no request body"


class UnsupportedMediaType(PatronError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class PayloadTooLarge(PatronError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class BodyNotUtf8(PatronError):
    status = 400
    code = "body_not_utf8"
    title = "Body not UTF-8"


class BodyTooDeep(PatronError):
    status = 400
    code = "body_too_deep"
    title = "Body nested too deeply"
