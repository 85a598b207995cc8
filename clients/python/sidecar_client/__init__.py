"""A small client for the sidecar's HTTP API (standard library only, Python 3.9+).

    from sidecar_client import Sidecar
    sc = Sidecar()                                   # http://127.0.0.1:8081, or $SIDECAR_URL
    greeting = sc.call("greeter", "Greeter.Hello", {"name": "Ada"})
    sc.publish("orders.created", {"id": 42})

Inside any web framework, a delivered message is parsed with ``parse_message(headers, body)``.
"""

from .client import Sidecar
from .errors import (
    BadRequest,
    BrokerUnavailable,
    CallFailed,
    NoHealthyNode,
    ServiceNotFound,
    SidecarError,
    SidecarUnreachable,
    Timeout,
    Unavailable,
)
from .message import Message, parse_message

__all__ = [
    "Sidecar",
    "SidecarError",
    "BadRequest",
    "ServiceNotFound",
    "NoHealthyNode",
    "Unavailable",
    "BrokerUnavailable",
    "Timeout",
    "CallFailed",
    "SidecarUnreachable",
    "Message",
    "parse_message",
]
