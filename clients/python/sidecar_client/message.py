"""Parsing a message the sidecar delivered to the app (a CloudEvent in binary mode)."""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Union


@dataclass
class Message:
    id: str
    topic: str
    type: Optional[str]
    source: Optional[str]
    time: Optional[str]
    attempt: int
    content_type: Optional[str]
    data: bytes
    headers: Dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.data.decode("utf-8"))

    def text(self) -> str:
        return self.data.decode("utf-8")


def parse_message(headers: Mapping[str, str], body: Union[bytes, str]) -> Message:
    """Build a Message from the request headers and body of a delivery, in any web framework.

    ``headers`` may be any mapping (case is ignored): Flask's ``request.headers``, Django's
    ``request.headers``, ``http.server``'s ``self.headers``...
    """
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    if "ce-id" not in h:
        raise ValueError("not a sidecar delivery: no ce-id header")
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return Message(
        id=h["ce-id"],
        topic=h.get("x-sidecar-topic", ""),
        type=h.get("ce-type"),
        source=h.get("ce-source"),
        time=h.get("ce-time"),
        attempt=int(h.get("x-sidecar-attempt", "1")),
        content_type=h.get("content-type"),
        data=data,
        headers=h,
    )
