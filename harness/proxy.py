"""A TCP proxy that can slow or cut the network between the system and a dependency.

These kernels have no ``tc netem``, so network faults are made here: the system is
started with the dependency's address pointing at the proxy, which forwards bytes
both ways and, on demand, delays every chunk (``slow``) or drops every connection
and refuses new ones (``cut``) until ``heal``.

    proxy = TcpProxy(("127.0.0.1", 6379)).start()   # listens on proxy.port
    proxy.slow(0.2)    # 200 ms more on every chunk, each way
    proxy.cut()        # live connections shut down, new ones closed at once
    proxy.heal()
"""
import socket
import threading
import time

CHUNK = 65536
ACCEPT_POLL_S = 0.2


class TcpProxy:
    def __init__(self, upstream, host="127.0.0.1", port=0):
        self.upstream = upstream
        self.address = (host, port)
        self.delay_s = 0.0
        self.is_cut = False
        self._listener = None
        self._connections = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def port(self):
        return self._listener.getsockname()[1]

    def start(self):
        self._listener = socket.create_server(self.address, reuse_port=False)
        self._listener.settimeout(ACCEPT_POLL_S)
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept",
                                          daemon=True)
        self._acceptor.start()
        return self

    def stop(self):
        # The accept loop closes the listener itself: a socket closed under a thread still
        # waiting on it frees its descriptor for reuse while that wait goes on.
        self._stopped.set()
        self._acceptor.join(timeout=5 * ACCEPT_POLL_S)
        self._drop_all()

    # --- faults ---------------------------------------------------------------------

    def slow(self, delay_s):
        self.delay_s = float(delay_s)

    def cut(self):
        self.is_cut = True
        self._drop_all()

    def heal(self):
        self.delay_s = 0.0
        self.is_cut = False

    # --- forwarding -----------------------------------------------------------------

    def _accept_loop(self):
        try:
            self._serve()
        finally:
            self._listener.close()

    def _serve(self):
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.is_cut:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                self._connections.add(link)
            if self.is_cut:  # cut while this one was being connected
                link.shut()
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(link, source, target),
                                 name="proxy-pump", daemon=True).start()

    def _pump(self, link, source, target):
        try:
            while True:
                data = source.recv(CHUNK)
                if not data or self.is_cut:
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                target.sendall(data)
        except OSError:
            pass
        finally:
            link.shut()
            if link.pump_done():
                with self._lock:
                    self._connections.discard(link)

    def _drop_all(self):
        with self._lock:
            links = list(self._connections)
        for link in links:
            link.shut()


class _Link:
    """Both sockets of one proxied connection. Shut down (which wakes the pumps blocked
    in ``recv``) by whoever ends it; closed only by the last of its two pumps, so a
    socket's file descriptor is never reused by a new connection while a pump of the
    old one still reads from it."""

    def __init__(self, client, server):
        self.sockets = (client, server)
        self._pumps_left = 2
        self._lock = threading.Lock()

    def shut(self):
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pump_done(self):
        """Called once by each pump as it ends; True (and the sockets closed) for the last."""
        with self._lock:
            self._pumps_left -= 1
            last = self._pumps_left == 0
        if last:
            for sock in self.sockets:
                sock.close()
        return last


class ProxyGroup:
    """Several proxies faulted as one (every node of a RabbitMQ cluster, say): a client
    with all of them in its failover list is cut only when each is."""

    def __init__(self, proxies):
        self.proxies = list(proxies)

    def cut(self):
        for proxy in self.proxies:
            proxy.cut()

    def heal(self):
        for proxy in self.proxies:
            proxy.heal()

    def slow(self, delay_s):
        for proxy in self.proxies:
            proxy.slow(delay_s)

    def stop(self):
        for proxy in self.proxies:
            proxy.stop()
