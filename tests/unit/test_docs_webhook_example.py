"""The webhook receiver of docs/api.md ("Checking the signature"), run as a reader would
run it, takes what the notifications service really sends: a delivery signed with the
webhook's secret is accepted once, one signed otherwise is refused."""
import re
import threading
from http.server import HTTPServer
from pathlib import Path

import pytest

from services.notifications.destinations import parse_networks
from services.notifications.messages import webhook_body
from services.notifications.senders import post_webhook

API_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SECRET = "whsec_the-secret-post-v1-webhooks-answered"


def example_code():
    text = API_GUIDE.read_text(encoding="utf-8")
    start = text.index("\n### Checking the signature\n")
    return re.search(r"```python\n(.*?)```", text[start:], re.DOTALL).group(1)


@pytest.fixture
def receiver():
    """The example's module, its SECRET set as the reader is told to, serving on loopback."""
    module = {"__name__": "webhook_receiver_example"}
    exec(compile(example_code(), str(API_GUIDE), "exec"), module)
    module["SECRET"] = SECRET
    server = HTTPServer(("127.0.0.1", 0), module["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield module, "http://127.0.0.1:{}/paysys-hook".format(server.server_address[1])
    server.shutdown()
    server.server_close()


def deliver(url, secret, event):
    return post_webhook(url, secret, webhook_body(event), timeout_s=5,
                        allowed_networks=parse_networks("127.0.0.0/8"))


EVENT = {"id": "0b7f6a52-1f0e-4c38-9d0a-5d1f4c1f2a11", "type": "transaction.completed",
         "created_at": "2026-11-30T04:00:00Z",
         "data": {"id": "tx-1", "amount": 5000, "currency": "JPY", "note": "café ünïcode"}}


def test_a_delivery_signed_with_the_secret_is_accepted_and_handled_once(receiver):
    module, url = receiver
    first = deliver(url, SECRET, EVENT)
    again = deliver(url, SECRET, EVENT)  # at least once: the same event may come twice
    assert (first.outcome, first.status_code) == ("succeeded", 204)
    assert (again.outcome, again.status_code) == ("succeeded", 204)
    assert module["seen"] == {EVENT["id"]}


def test_a_delivery_signed_otherwise_is_refused_and_not_handled(receiver):
    module, url = receiver
    forged = deliver(url, "whsec_someone-else", EVENT)
    assert (forged.outcome, forged.status_code) == ("failed", 401)
    assert module["seen"] == set()
