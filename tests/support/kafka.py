"""A private Kafka-protocol broker for a test: the embedded tansu binary on a free loopback
port, started and stopped by the test. It keeps messages in memory only, so a restart
brings it back empty, which is exactly the failure the mirror's relay must survive."""
import subprocess
from contextlib import contextmanager

from harness.servers import free_port, port_open, wait_for


class Broker:
    """``start()``, ``stop()``, ``restart()`` (empty again); ``bootstrap_servers``."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.process = None

    @property
    def bootstrap_servers(self):
        return "127.0.0.1:{}".format(self.port)

    def command(self):
        """What supervisord runs for `make up` (paysys/supervisor.py, render_conf)."""
        from paysys.checks import tansu_binary

        address = "tcp://127.0.0.1:{}".format(self.port)
        return [tansu_binary(), "broker", "--listener-url", address,
                "--advertised-listener-url", address, "--silent"]

    def start(self):
        assert self.process is None, "the broker is running"
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: port_open("127.0.0.1", self.port, timeout_s=0.2) or (
                self.process.poll() is not None and _exited(self.process)), 15,
                interval_s=0.05, what="tansu listening on {}".format(self.port))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, graceful=False):
        """Kill it (a crash: what it held is gone either way), or with ``graceful``
        ask it to stop (tansu takes about five seconds to)."""
        process, self.process = self.process, None
        if process is None:
            return
        if graceful:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        process.wait(timeout=10)
        wait_for(lambda: not port_open("127.0.0.1", self.port, timeout_s=0.2), 10,
                 interval_s=0.05, what="tansu stopped")

    def restart(self):
        """Stop and start on the same port: back, and empty."""
        self.stop()
        return self.start()


def _exited(process):
    raise AssertionError("tansu exited with status {}".format(process.returncode))


@contextmanager
def running_broker():
    """A started broker, stopped on the way out; a test module's fixture::

        @pytest.fixture
        def kafka_broker():
            with running_broker() as broker:
                yield broker
    """
    broker = Broker().start()
    try:
        yield broker
    finally:
        broker.stop()
