"""The client: one Sidecar per app, talking to its sidecar on localhost."""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Mapping, Optional

from .errors import CallFailed, SidecarUnreachable, error_for

DEFAULT_URL = "http://127.0.0.1:8081"


class Sidecar:
    """The app's sidecar. ``url`` defaults to $SIDECAR_URL, then http://127.0.0.1:8081."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 30.0):
        self.url = (url or os.environ.get("SIDECAR_URL") or DEFAULT_URL).rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None):
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as res:
                return res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            raise SidecarUnreachable(f"cannot reach the sidecar at {self.url}: {getattr(e, 'reason', e)}") from e

    @staticmethod
    def _raise(status: int, headers, body: bytes) -> None:
        content_type = headers.get("content-type") if headers else None
        if content_type and content_type.startswith("application/json"):
            try:
                err = json.loads(body).get("error")
            except (ValueError, AttributeError):
                err = None
            if isinstance(err, dict) and "code" in err:
                raise error_for(err["code"], err.get("message", ""), status, err.get("requestId"))
        raise CallFailed(status, body, content_type)

    def call(self, service: str, endpoint: str, request: Any = None, timeout: Optional[float] = None, retries: Optional[int] = None, headers: Optional[Mapping[str, str]] = None) -> Any:
        """Call ``endpoint`` ("Greeter.Hello" or "/path") of ``service``; returns the answer, parsed when it is JSON.

        ``timeout`` is in seconds; ``retries`` opts in to retries of idempotent calls.
        Raises a SidecarError subclass for the sidecar's errors, CallFailed for the callee's non-2xx.
        """
        envelope: Dict[str, Any] = {"service": service, "endpoint": endpoint, "request": {} if request is None else request}
        if timeout is not None:
            envelope["timeout"] = int(timeout * 1000)
        if retries is not None:
            envelope["retries"] = retries
        h = {"Content-Type": "application/json", **(headers or {})}
        status, res_headers, body = self._request("POST", "/rpc", json.dumps(envelope).encode("utf-8"), h, timeout=(timeout or self.timeout) + 5)
        if not 200 <= status < 300:
            self._raise(status, res_headers, body)
        content_type = res_headers.get("content-type", "")
        if content_type.startswith("application/json"):
            return json.loads(body) if body else None
        return body

    def publish(self, topic: str, data: Any, content_type: Optional[str] = None, headers: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """Publish ``data`` (bytes, str, or anything JSON) to ``topic``; returns {"id", "topic", "stored"}."""
        if isinstance(data, bytes):
            body, ct = data, content_type or "application/octet-stream"
        elif isinstance(data, str):
            body, ct = data.encode("utf-8"), content_type or "text/plain; charset=utf-8"
        else:
            body, ct = json.dumps(data).encode("utf-8"), content_type or "application/json"
        status, res_headers, res_body = self._request("POST", "/publish/" + urllib.parse.quote(topic, safe=".*>-_"), body, {"Content-Type": ct, **(headers or {})})
        if status != 202:
            self._raise(status, res_headers, res_body)
        return json.loads(res_body)

    def services(self) -> List[str]:
        """Names of the services with at least one registered node."""
        status, headers, body = self._request("GET", "/registry")
        if status != 200:
            self._raise(status, headers, body)
        return [s["service"] for s in json.loads(body)["services"]]

    def nodes(self, service: str) -> List[Dict[str, Any]]:
        """The node records of ``service`` (id, address, version, metadata, state...)."""
        status, headers, body = self._request("GET", "/registry/" + urllib.parse.quote(service, safe=""))
        if status != 200:
            self._raise(status, headers, body)
        return json.loads(body)["nodes"]
