"""Typed exceptions: each carries the sidecar's stable error code (see the sidecar README's error table)."""

from typing import Optional


class SidecarError(Exception):
    """The sidecar answered with its JSON error body: ``code`` is stable, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int, request_id: Optional[str] = None):
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id


class BadRequest(SidecarError):
    """400: the call was malformed (BAD_JSON, INVALID_REQUEST, INVALID_NAME, INVALID_TOPIC)."""


class ServiceNotFound(SidecarError):
    """404 SERVICE_NOT_FOUND: no such service in the registry."""


class NoHealthyNode(SidecarError):
    """503 NO_HEALTHY_NODE: the service exists but no node takes calls right now."""


class Unavailable(SidecarError):
    """502/503: the callee could not be reached or is overloaded (UPSTREAM_UNREACHABLE, APP_UNREACHABLE, OVERLOADED, ...)."""


class BrokerUnavailable(SidecarError):
    """503 BROKER_UNAVAILABLE: the broker did not take a published message; publish again."""


class Timeout(SidecarError):
    """504 TIMEOUT: the call did not complete within its deadline."""


class CallFailed(Exception):
    """The callee app itself answered a non-2xx status; its answer is passed through unchanged."""

    def __init__(self, status: int, body: bytes, content_type: Optional[str]):
        super().__init__(f"the callee answered {status}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.content_type = content_type


class SidecarUnreachable(Exception):
    """The sidecar itself could not be reached (not running, wrong URL)."""


_BY_CODE = {
    "BAD_JSON": BadRequest,
    "INVALID_REQUEST": BadRequest,
    "INVALID_NAME": BadRequest,
    "INVALID_TOPIC": BadRequest,
    "BODY_TOO_LARGE": BadRequest,
    "SERVICE_NOT_FOUND": ServiceNotFound,
    "NO_HEALTHY_NODE": NoHealthyNode,
    "UPSTREAM_UNREACHABLE": Unavailable,
    "APP_UNREACHABLE": Unavailable,
    "OVERLOADED": Unavailable,
    "RESPONSE_TOO_LARGE": Unavailable,
    "BROKER_UNAVAILABLE": BrokerUnavailable,
    "TIMEOUT": Timeout,
}


def error_for(code: str, message: str, status: int, request_id: Optional[str]) -> SidecarError:
    return _BY_CODE.get(code, SidecarError)(code, message, status, request_id)
