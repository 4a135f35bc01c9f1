"""A real HTTP server on loopback that receives webhooks, for tests.

It records every request (raw body, headers, arrival time) and answers each according to a
script: a list of responses used in turn (an HTTP status, or ``("sleep", seconds)`` to answer
200 only after that long), then ``default_status``. It can be stopped and started again on
the same port, to play a receiver that is down for a while.

    receiver = WebhookReceiver(script=[500, 503]).start()
    receiver.url            # http://127.0.0.1:PORT/hook
    receiver.wait_for(1)    # the requests received, once there are at least 1
    receiver.stop()
"""
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int = None  # what the receiver answered
    extra: dict = field(default_factory=dict)


class WebhookReceiver:
    def __init__(self, script=(), default_status=200, path="/hook"):
        self.script = list(script)
        self.default_status = default_status
        self.path = path
        self.received = []
        self.port = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Received(self.path, {k: v for k, v in self.headers.items()}, body,
                                   time.monotonic())
                with receiver._lock:
                    receiver.received.append(request)
                    action = receiver.script.pop(0) if receiver.script else \
                        receiver.default_status
                status = action
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    status = 200
                request.status = status
                payload = b'{"ok": true}' if 200 <= status < 300 else b'{"ok": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up waiting (a timeout test)
                self.close_connection = True

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening: connections to the port are refused until ``start()`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def running(self):
        return self._server is not None

    @property
    def url(self):
        return "http://127.0.0.1:{}{}".format(self.port, self.path)

    # --- what was received -----------------------------------------------------------------

    def wait_for(self, count, timeout_s=10.0):
        """The requests received once there are at least ``count``; AssertionError after
        ``timeout_s`` without."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError("expected {} webhook requests within {} s, got {}".format(
            count, timeout_s, len(self.received)))
