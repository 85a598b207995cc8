import os
import shutil
import tempfile
import time
import unittest

from sidecar_client import (
    BadRequest,
    CallFailed,
    ServiceNotFound,
    Sidecar,
    SidecarUnreachable,
    Timeout,
    parse_message,
)

from .support import App, SidecarProcess


def settings(service, port, registry):
    return [
        f"service.name={service}", f"app.port={port}", "app.health.path=/health", "app.health.interval=100ms",
        "api.port=0", "inbound.port=0", f"registry.dir={registry}", "registry.ttl=1500ms",
    ]


class ClientTest(unittest.TestCase):
    """The Python client against real sidecars (local registry and broker) and a real app."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sidecar-py-")
        cls.greeter = App()
        cls.caller = App()
        cls.greeter_sidecar = SidecarProcess(
            settings("pygreeter", cls.greeter.port, cls.tmp) + ['subscriptions=[{"topic": "py.events", "path": "/events"}]'], cls.tmp
        )
        cls.caller_sidecar = SidecarProcess(settings("pycaller", cls.caller.port, cls.tmp), cls.tmp)
        cls.sc = Sidecar(cls.caller_sidecar.api)
        deadline = time.time() + 5
        while "pygreeter" not in cls.sc.services() and time.time() < deadline:
            time.sleep(0.02)

    @classmethod
    def tearDownClass(cls):
        cls.caller_sidecar.stop()
        cls.greeter_sidecar.stop()
        cls.greeter.stop()
        cls.caller.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_call_returns_the_parsed_answer(self):
        self.assertEqual(self.sc.call("pygreeter", "Greeter.Hello", {"name": "Ada"}), {"message": "Hello Ada"})

    def test_errors_carry_the_sidecars_code(self):
        with self.assertRaises(ServiceNotFound) as e:
            self.sc.call("nobody", "A.b")
        self.assertEqual(e.exception.code, "SERVICE_NOT_FOUND")
        self.assertEqual(e.exception.status, 404)
        self.assertTrue(e.exception.request_id)
        with self.assertRaises(BadRequest) as e:
            self.sc.call("bad name", "A.b")
        self.assertEqual(e.exception.code, "INVALID_NAME")

    def test_the_callees_own_errors_pass_through(self):
        with self.assertRaises(CallFailed) as e:
            self.sc.call("pygreeter", "/Teapot")
        self.assertEqual(e.exception.status, 418)
        self.assertEqual(e.exception.body, b"short and stout")

    def test_timeout(self):
        with self.assertRaises(Timeout) as e:
            self.sc.call("pygreeter", "/slow", timeout=0.2)
        self.assertEqual(e.exception.code, "TIMEOUT")

    def test_publish_and_parse_the_delivered_message(self):
        res = self.sc.publish("py.events", {"order": 7}, headers={"ce-type": "com.example.order"})
        self.assertEqual(res["topic"], "py.events")
        deadline = time.time() + 5
        while not self.greeter.deliveries and time.time() < deadline:
            time.sleep(0.02)
        headers, body = self.greeter.deliveries[0]
        msg = parse_message(headers, body)
        self.assertEqual(msg.id, res["id"])
        self.assertEqual(msg.topic, "py.events")
        self.assertEqual(msg.type, "com.example.order")
        self.assertEqual(msg.attempt, 1)
        self.assertEqual(msg.content_type, "application/json")
        self.assertEqual(msg.json(), {"order": 7})
        with self.assertRaises(ValueError):
            parse_message({"content-type": "text/plain"}, b"x")

    def test_services_and_nodes(self):
        self.assertIn("pygreeter", self.sc.services())
        nodes = self.sc.nodes("pygreeter")
        self.assertEqual(len(nodes), 1)
        self.assertEqual(nodes[0]["service"], "pygreeter")
        with self.assertRaises(ServiceNotFound):
            self.sc.nodes("nobody")

    def test_unreachable_sidecar(self):
        with self.assertRaises(SidecarUnreachable):
            Sidecar("http://127.0.0.1:1").services()

    def test_url_from_the_environment(self):
        os.environ["SIDECAR_URL"] = self.caller_sidecar.api
        try:
            self.assertIn("pycaller", Sidecar().services())
        finally:
            del os.environ["SIDECAR_URL"]


if __name__ == "__main__":
    unittest.main()
