"""The chaos harness's own parts: the TCP proxy's faults, and the checker's reading of
operations that got no answer."""
import socket
import threading
import time

import pytest

from harness.proxy import TcpProxy
from harness.bank import Operation
from harness.bank_rules import check_unknown


@pytest.fixture
def echo_server():
    """A loopback server that echoes every line back. Stopped by its own loop, never by
    closing a socket another thread still waits on (its descriptor could be reused)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve():
        with listener:
            while not stopping.is_set():
                try:
                    connection, _ = listener.accept()
                except socket.timeout:
                    continue
                threading.Thread(target=echo, args=(connection,), daemon=True).start()

    def echo(connection):
        connection.settimeout(5)
        with connection:
            try:
                while data := connection.recv(1024):
                    connection.sendall(data)
            except OSError:
                pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    yield listener.getsockname()
    stopping.set()
    server.join()


@pytest.fixture
def proxy(echo_server):
    proxy = TcpProxy(echo_server).start()
    yield proxy
    proxy.stop()


def roundtrip(port, payload=b"ping\n", timeout_s=2):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as client:
        client.sendall(payload)
        return client.recv(1024)


def answers(port):
    """True if a new connection through ``port`` echoes; False if it is closed or reset."""
    try:
        return roundtrip(port) == b"ping\n"
    except OSError:
        return False


def test_it_forwards_both_ways(proxy):
    assert roundtrip(proxy.port) == b"ping\n"


def test_a_cut_breaks_live_connections_and_refuses_new_ones_until_healed(proxy):
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    live.sendall(b"a\n")
    assert live.recv(1024) == b"a\n"
    proxy.cut()
    try:
        live.sendall(b"b\n")
        assert live.recv(1024) == b""  # closed under it
    except OSError:
        pass  # or reset: either way the connection is gone
    live.close()
    assert not answers(proxy.port)
    proxy.heal()
    assert roundtrip(proxy.port) == b"ping\n"


def test_slow_delays_every_chunk(proxy):
    proxy.slow(0.2)
    started = time.monotonic()
    assert roundtrip(proxy.port) == b"ping\n"
    # One chunk each way: at least two delays. (A lower bound only: never flaky.)
    assert time.monotonic() - started >= 0.4


def operation(source, destination, amount, transaction_id=None):
    op = Operation("key", source, destination, amount, 0.0)
    if transaction_id:
        op.transaction = {"id": transaction_id}
    return op


def transfer(transaction_id, source, destination, amount):
    return {"id": transaction_id, "type": "transfer", "source_account_id": source,
            "destination_account_id": destination, "amount": amount}


def test_an_unanswered_operation_may_have_made_its_transaction_once():
    operations = [operation("a", "b", 5, "t1"), operation("a", "b", 7)]
    books = {"t1": transfer("t1", "a", "b", 5), "t2": transfer("t2", "a", "b", 7)}
    assert check_unknown(operations, books) == []
    assert check_unknown(operations, {"t1": books["t1"]}) == []  # or none at all


def test_a_transfer_no_operation_asked_for_is_a_problem():
    operations = [operation("a", "b", 7)]
    books = {"t2": transfer("t2", "a", "b", 7), "t3": transfer("t3", "a", "b", 7)}
    problems = check_unknown(operations, books)
    assert len(problems) == 1 and "made by no operation" in problems[0]
