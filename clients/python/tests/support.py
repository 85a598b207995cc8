"""Real processes for the client tests: a sidecar (node dist/cli.js) and a small app in a thread."""

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLI = os.environ.get("SIDECAR_CLI", os.path.join(ROOT, "dist", "cli.js"))


class SidecarProcess:
    """`sidecar start` with --set settings; waits until the app is registered and reads the api address."""

    def __init__(self, settings, cwd):
        args = ["node", CLI, "start"]
        for s in settings + ["log.format=json"]:
            args += ["--set", s]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, text=True)
        self.api = None
        deadline = time.time() + 15
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("sidecar exited: " + self.proc.stderr.read())
            rec = json.loads(line)
            if rec.get("message") == "listening":
                self.api = "http://" + rec["api"]
            if rec.get("message") == "registered":
                break
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class App:
    """An app on 127.0.0.1:0: Greeter.Hello, a teapot, a slow endpoint, and /events recording deliveries."""

    def __init__(self):
        self.deliveries = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200 if self.path == "/health" else 404, b"ok", "text/plain")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/Greeter/Hello":
                    self._send(200, {"message": "Hello " + json.loads(body).get("name", "?")})
                elif self.path == "/Teapot":
                    self._send(418, b"short and stout", "text/plain")
                elif self.path.startswith("/slow"):
                    time.sleep(1.0)
                    self._send(200, {})
                elif self.path == "/events":
                    app.deliveries.append((dict(self.headers.items()), body))
                    self._send(204, b"", "text/plain")
                else:
                    self._send(404, b"no such endpoint", "text/plain")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
