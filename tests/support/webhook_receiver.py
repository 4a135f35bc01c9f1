"""A real HTTP server on loopback that receives webhooks, for tests.

It records every request (raw body, headers, arrival time) and answers each according to a
script: a list of responses used in turn (an HTTP status, ``("sleep", seconds)`` to answer
200 only after that long, ``("hold", event)`` to answer 200 only once the test sets the
threading.Event, or ``("redirect", url)`` to answer 302 to ``url``), then
``default_status``. It can be stopped and started again on the same port, to play a
receiver that is down for a while.

    receiver = WebhookReceiver(script=[500, 503]).start()
    receiver.url            # http://127.0.0.1:PORT/hook
    receiver.wait_for(1)    # the requests received, once there are at least 1
    receiver.stop()
"""
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.loopback import LoopbackServer


# A held answer is released by its test; this only keeps a failed test from hanging.
HOLD_LIMIT_S = 60


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int = None  # what the receiver answered
    extra: dict = field(default_factory=dict)


class WebhookReceiver(LoopbackServer):
    noun = "webhook requests"

    def __init__(self, script=(), default_status=200, path="/hook"):
        super().__init__()
        self.script = list(script)
        self.default_status = default_status
        self.path = path

    def make_server(self, address):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Received(self.path, {k: v for k, v in self.headers.items()}, body,
                                   time.monotonic())
                with receiver._lock:  # the arrival and its scripted answer, in one order
                    receiver.received.append(request)
                    action = receiver.script.pop(0) if receiver.script else \
                        receiver.default_status
                status, location = action, None
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    status = 200
                elif isinstance(action, tuple) and action[0] == "hold":
                    action[1].wait(HOLD_LIMIT_S)
                    status = 200
                elif isinstance(action, tuple) and action[0] == "redirect":
                    status, location = 302, action[1]
                request.status = status
                payload = b'{"ok": true}' if 200 <= status < 300 else b'{"ok": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if location:
                    self.send_header("Location", location)
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

        server = ThreadingHTTPServer(address, Handler)
        server.daemon_threads = True
        return server

    @property
    def url(self):
        return "http://127.0.0.1:{}{}".format(self.port, self.path)
