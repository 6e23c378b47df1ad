"""The project's exceptions, in one small module (STYLE.md rule 8)."""

from __future__ import annotations


class SfuError(Exception):
    """Base of every error the server raises on purpose."""


class ConfigError(SfuError):
    """A configuration file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UnsafeSecretFile(SfuError):
    """The embedded default's secret file or its directory could be read or replaced by
    someone else (owner, mode, a symbolic link)."""


class ApiError(SfuError):
    """An error with a contract code (API.md), raised by rooms and answered by the server."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


def bad_request(message: str) -> ApiError:
    return ApiError("bad_request", message, 400)


def unauthorized(message: str) -> ApiError:
    return ApiError("unauthorized", message, 401)


def forbidden(message: str) -> ApiError:
    return ApiError("forbidden", message, 403)


def not_found(message: str) -> ApiError:
    return ApiError("not_found", message, 404)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(code, message, 409)


class NegotiationError(SfuError):
    """An SDP answer does not fit the offer it answers."""


def too_large(message: str) -> ApiError:
    return ApiError("too_large", message, 413)


def unsupported_media_type(message: str) -> ApiError:
    """415 (an extension of the contract's codes): a body that is not declared JSON."""
    return ApiError("unsupported_media_type", message, 415)


def rate_limited(message: str) -> ApiError:
    return ApiError("rate_limited", message, 429)


def server_full(message: str) -> ApiError:
    """503 (an extension of the contract's codes): a server-wide budget is spent (media
    connections, pre-call tests, WebSockets); try again later or elsewhere."""
    return ApiError("server_full", message, 503)


def room_full(message: str) -> ApiError:
    """A space or room already holds ``limits.max_participants`` (WebSocket code ``room_full``)."""
    return ApiError("room_full", message, 409)
