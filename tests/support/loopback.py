"""A server on loopback for tests, in a daemon thread, keeping what it receives.

Subclasses build the socketserver in ``make_server(address)`` and call
``keep(item)`` from their handlers. ``stop()`` then ``start()`` again keeps the
port, to play a peer that is down for a while.
"""
import threading
import time


class LoopbackServer:
    host = "127.0.0.1"
    noun = "items"  # what wait_for's failure message counts

    def __init__(self):
        self.received = []
        self.port = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()

    def make_server(self, address):
        raise NotImplementedError

    def start(self):
        self._server = self.make_server((self.host, self.port or 0))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
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

    def keep(self, item):
        with self._lock:
            self.received.append(item)

    def wait_for(self, count, timeout_s=10.0):
        """What was received once there are at least ``count``; AssertionError after
        ``timeout_s`` without."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError("expected {} {} within {} s, got {}".format(
            count, self.noun, timeout_s, len(self.received)))
