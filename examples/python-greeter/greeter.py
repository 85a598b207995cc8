"""Example: a Python greeter service beside its sidecar (standard library only).

It answers Greeter.Hello (the sidecar maps it to POST /Greeter/Hello) and receives the
orders.created messages its sidecar delivers to POST /events/orders. GET /stats shows them.

    APP_PORT=5000 python3 greeter.py
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))  # in the repo; in the image it is installed
from sidecar_client import parse_message  # noqa: E402

PORT = int(os.environ.get("APP_PORT", "5000"))
orders = []
lock = threading.Lock()


class Greeter(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        elif self.path == "/stats":
            with lock:
                self.reply(200, {"orders": len(orders), "last": orders[-1] if orders else None})
        else:
            self.reply(404, {"error": "no such path"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/Greeter/Hello":
            try:
                name = json.loads(body or b"{}").get("name", "stranger")
            except ValueError:
                return self.reply(400, {"error": "the request is not JSON"})
            caller = self.headers.get("x-sidecar-caller", "someone")
            print(f"greeter: Hello {name} (called by {caller})", flush=True)
            return self.reply(200, {"message": f"Hello {name}", "from": "python-greeter"})
        if self.path == "/events/orders":
            msg = parse_message(self.headers, body)
            order = msg.json()
            with lock:
                orders.append(order)
            print(f"greeter: received order {order} (message {msg.id}, attempt {msg.attempt})", flush=True)
            self.send_response(204)
            self.end_headers()
            return None
        return self.reply(404, {"error": "no such endpoint"})


if __name__ == "__main__":
    # In a container this runs as PID 1, which ignores any signal it has no handler for: without
    # this, `docker compose stop` and a pod's termination would wait out their grace period.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = ThreadingHTTPServer(("0.0.0.0" if os.environ.get("APP_HOST") == "0.0.0.0" else "127.0.0.1", PORT), Greeter)
    print(f"greeter: listening on port {PORT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
