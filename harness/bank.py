"""The bank workload, against a running system over HTTP: what the tests, the chaos
experiments and ``python -m loadtests.bank`` load the system with.

Concurrent clients transfer random amounts among a set of accounts; some replay a
request with the same Idempotency-Key, and now and then one pays another's merchant
account. Every client operation is recorded, Jepsen style (invoke, then ok, fail or
unknown), into the run's ``History``, which the bank checker (harness/bank_checker.py)
judges against the books.
"""
import random
import statistics
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field

import requests

PASSWORD = "bank workload password"
INITIAL_BALANCE = 60_000  # minor units per account: low enough that some transfers fail
# Half the opening balance: some transfers fail for want of funds. Over a long run such
# amounts drain most accounts into a few (a random walk with absorption), so long runs
# (the chaos experiments) pass a smaller ``max_transfer``.
MAX_TRANSFER = 30_000
RETRY_STATUSES = (409, 429, 503)
# A 409 worth retrying: the same request still in flight, or another settling the payment.
# Any other 409 (a payment no longer authorized) is the answer.
RETRY_CONFLICTS = ("idempotency_key_in_flight", "payment_busy")
UNKNOWN_PAUSE_S = 0.5
PAGE_SIZE = 200  # the API's largest page


@dataclass
class Client:
    """One user of the bank, with an HTTP session and their accounts."""

    url: str
    email: str
    token: str = ""
    accounts: list = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)
    page_size: int = PAGE_SIZE

    def call(self, method, path, **kwargs):
        headers = dict(kwargs.pop("headers", {}), Authorization="Bearer " + self.token)
        # Each client its own address, as real customers are, for the per-IP limit.
        headers.setdefault("X-Forwarded-For", self.address)
        return self.session.request(method, self.url + path, headers=headers, timeout=60,
                                    **kwargs)

    @property
    def address(self):
        number = zlib.crc32(self.email.encode())
        return "10.77.{}.{}".format(number // 250 % 250, number % 250 + 1)

    def move(self, path, body, key, attempts=20):
        """POST a money movement until it gets an answer that is not 'try again'."""
        response = None
        for _ in range(attempts):
            response = self.call("POST", path, json=body, headers={"Idempotency-Key": key})
            if response.status_code not in RETRY_STATUSES or (
                    response.status_code == 409 and _code(response) not in RETRY_CONFLICTS):
                return response
            time.sleep(min(float(response.headers.get("Retry-After", 1)), 2.0))
        return response

    def poll(self, location, timeout_s=60):
        """GET ``location`` until the transaction there is no longer pending."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = self.call("GET", location)
            if (response.status_code != 200 or response.json()["status"] != "pending"
                    or time.monotonic() > deadline):
                return response
            time.sleep(0.2)

    def fetch(self, path, params=None, attempts=20):
        """GET ``path``, waiting out a 429 as its Retry-After says: the rate limits of a
        system under test, which the workload itself used up (a read is safe to repeat)."""
        for _ in range(attempts):
            response = self.call("GET", path, params=params)
            if response.status_code != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After", 1)), 2.0))
        return response

    def read(self, path, params=None):
        """The JSON at ``path`` (``fetch``); raises for an error."""
        response = self.fetch(path, params)
        response.raise_for_status()
        return response.json()

    def pages(self, path, params=None):
        """Every item of the list at ``path``, ``page_size`` a request."""
        def fetch_page(cursor):
            query = dict(params or {}, limit=self.page_size)
            if cursor:
                query["cursor"] = cursor
            return self.read(path, query)

        return read_pages(fetch_page)


def read_pages(fetch_page):
    """Every item of a paginated list: ``fetch_page(cursor)`` answers ``{items,
    next_cursor}`` (cursor None for the first page); follows ``next_cursor`` to the end."""
    items, cursor, seen = [], None, set()
    while True:
        page = fetch_page(cursor)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items
        if cursor in seen:  # a list that leads back on itself would never end
            raise RuntimeError("pagination loops at cursor {!r}".format(cursor))
        seen.add(cursor)


def _code(response):
    try:
        return response.json().get("code")
    except ValueError:
        return None


@dataclass
class Payment:
    """One payment lifecycle: the payer authorizes, the merchant captures part of it.
    ``outcome`` of each step as for transfers: ok, fail or unknown."""

    payer: "Client"
    source: str
    merchant: "Client"
    destination: str
    amount: int
    capture_amount: int
    payment_id: str = None
    authorized: str = "invoke"
    captured: str = "invoke"


@dataclass
class Operation:
    """One client operation, Jepsen style: invoked, then ok / fail / unknown."""

    key: str
    source: str
    destination: str
    amount: int
    started_s: float
    latency_s: float = 0.0
    outcome: str = "invoke"  # ok (completed), fail (failed), unknown (no answer / pending)
    status_code: int = 0
    transaction: dict = None
    replayed_same: bool = None


class Bank:
    def __init__(self, url, users=8, accounts_per_user=2, currency="USD",
                 max_transfer=MAX_TRANSFER):
        self.url = url.rstrip("/")
        self.users = users
        self.accounts_per_user = accounts_per_user
        self.currency = currency
        self.max_transfer = max_transfer
        self.clients = []
        self.operations = []
        self.payments = []
        self.deposited = 0
        self._lock = threading.Lock()

    # --- setting up ---------------------------------------------------------------

    def open(self):
        for _ in range(self.users):
            client = Client(self.url, "bank-{}@example.test".format(uuid.uuid4().hex[:12]))
            register = requests.post(self.url + "/v1/auth/register", timeout=30, json={
                "email": client.email, "password": PASSWORD, "full_name": "Bank client"},
                headers={"X-Forwarded-For": client.address})
            register.raise_for_status()
            login = requests.post(self.url + "/v1/auth/login", timeout=30, json={
                "email": client.email, "password": PASSWORD},
                headers={"X-Forwarded-For": client.address})
            login.raise_for_status()
            client.token = login.json()["access_token"]
            for _ in range(self.accounts_per_user):
                opened = client.call("POST", "/v1/accounts", json={"currency": self.currency})
                opened.raise_for_status()
                account_id = opened.json()["id"]
                deposit = client.move("/v1/deposits", {
                    "account_id": account_id, "amount": INITIAL_BALANCE,
                    "currency": self.currency}, str(uuid.uuid4()))
                if deposit.status_code != 201 or deposit.json()["status"] != "completed":
                    raise RuntimeError("initial deposit failed: {} {}".format(
                        deposit.status_code, deposit.text))
                self.deposited += INITIAL_BALANCE
                client.accounts.append(account_id)
            self.clients.append(client)
        return self

    @property
    def all_accounts(self):
        return [account for client in self.clients for account in client.accounts]

    # --- running ------------------------------------------------------------------

    def run(self, seconds=None, transfers_per_client=None, replay_fraction=0.1, seed=None,
            stop=None, payment_fraction=0.0):
        """One thread per client until ``seconds`` pass, each made its transfers, or the
        ``stop`` event is set. ``payment_fraction`` of the rounds are a payment lifecycle
        (authorize, then the merchant captures part) instead of a transfer."""
        deadline = time.monotonic() + seconds if seconds else None
        stop = stop or threading.Event()
        threads = [threading.Thread(target=self._client_loop, args=(
            client, deadline, transfers_per_client, replay_fraction,
            random.Random(None if seed is None else seed + index), stop, payment_fraction))
            for index, client in enumerate(self.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started

    def _client_loop(self, client, deadline, count, replay_fraction, rng, stop,
                     payment_fraction):
        made = 0
        while (deadline is None or time.monotonic() < deadline) and (
                count is None or made < count) and not stop.is_set():
            if rng.random() < payment_fraction:
                self.pay(client, rng)
                continue
            source = rng.choice(client.accounts)
            destination = rng.choice([a for a in self.all_accounts if a != source])
            operation = self.transfer(client, source, destination,
                                      rng.randint(1, self.max_transfer))
            if rng.random() < replay_fraction and operation.transaction is not None:
                self.replay(client, operation)
            if operation.outcome == "unknown":
                time.sleep(UNKNOWN_PAUSE_S)  # the gateway is away: do not spin on it
            made += 1

    def transfer(self, client, source, destination, amount):
        operation = Operation(str(uuid.uuid4()), source, destination, amount, time.monotonic())
        with self._lock:
            self.operations.append(operation)
        body = {"source_account_id": source, "destination_account_id": destination,
                "amount": amount, "currency": self.currency}
        try:
            response = client.move("/v1/transfers", body, operation.key)
        except requests.RequestException:
            operation.outcome = "unknown"
            operation.latency_s = time.monotonic() - operation.started_s
            return operation
        operation.status_code = response.status_code
        if response.status_code == 202:  # still pending: poll where it says
            response = client.poll(response.headers["Location"])
        operation.latency_s = time.monotonic() - operation.started_s
        if response.status_code in (200, 201, 202):
            operation.transaction = response.json()
            operation.outcome = {"completed": "ok", "failed": "fail"}.get(
                operation.transaction["status"], "unknown")
        else:
            operation.outcome = "fail" if 400 <= response.status_code < 500 else "unknown"
        return operation

    def pay(self, payer, rng):
        merchant = rng.choice([client for client in self.clients if client is not payer])
        amount = rng.randint(2, self.max_transfer)
        payment = Payment(payer, rng.choice(payer.accounts), merchant,
                          rng.choice(merchant.accounts), amount, rng.randint(1, amount))
        with self._lock:
            self.payments.append(payment)
        try:
            response = payer.move("/v1/payments", {
                "payer_account_id": payment.source, "merchant_account_id": payment.destination,
                "amount": amount, "currency": self.currency, "capture": False},
                str(uuid.uuid4()))
        except requests.RequestException:
            payment.authorized = "unknown"
            return payment
        if response.status_code != 201:
            payment.authorized = "fail" if 400 <= response.status_code < 500 else "unknown"
            return payment
        body = response.json()
        payment.payment_id = body["id"]
        payment.authorized = "ok" if body["status"] == "authorized" else "fail"
        if payment.authorized == "ok":
            try:
                response = merchant.move("/v1/payments/{}/capture".format(payment.payment_id),
                                         {"amount": payment.capture_amount}, str(uuid.uuid4()))
                payment.captured = ("ok" if response.status_code == 200 else
                                    "fail" if 400 <= response.status_code < 500 else "unknown")
            except requests.RequestException:
                payment.captured = "unknown"
        return payment

    def replay(self, client, operation):
        body = {"source_account_id": operation.source,
                "destination_account_id": operation.destination,
                "amount": operation.amount, "currency": self.currency}
        response = client.move("/v1/transfers", body, operation.key)
        operation.replayed_same = (response.status_code in (201, 202) and
                                   response.json()["id"] == operation.transaction["id"])

    def history(self):
        with self._lock:
            return History(self.deposited, list(self.operations), list(self.payments))

    # --- figures --------------------------------------------------------------------

    def figures(self, elapsed_s):
        completed = [op for op in self.operations if op.outcome == "ok"]
        latencies = sorted(op.latency_s * 1000 for op in self.operations if op.latency_s)
        return {
            "operations": len(self.operations),
            "completed": len(completed),
            "failed": sum(op.outcome == "fail" for op in self.operations),
            "unknown": sum(op.outcome == "unknown" for op in self.operations),
            "seconds": round(elapsed_s, 2),
            "completed_per_s": round(len(completed) / elapsed_s, 1) if elapsed_s else 0.0,
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
        }


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[p - 1]


@dataclass
class History:
    """What the clients did and were told: the money they deposited, every transfer
    operation and every payment."""

    deposited: int
    operations: list
    payments: list
