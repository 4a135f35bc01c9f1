"""The benchmark's workload: bank customers who move money and read their books.

    locust                                    web UI on :8089, settings from locust.conf
    locust --headless -u 50 -r 10 -t 2m       the same without the UI
    locust --tags transfers                   only the tasks tagged transfers
    locust -f loadtests/locustfile.py,loadtests/shape.py    under the step load shape

docs/load-testing.md says how to run it and how to lift the rate limits for a run.

Each simulated user registers and logs in (a unique e-mail), opens two USD
accounts — one it spends from, one it receives merchant payments on — and
deposits into both. Then, with the weights of the @task decorators, it
transfers to other users' accounts, deposits, pays other users as merchants
(authorize then capture part / refund part / void, or one-step capture), reads
balances and histories, and now and then logs in again.

Why it looks the way it does:
- Users know each other through one module-level book (Locust runs every user
  of a process in one interpreter), so transfers and payments cross users the
  way real money does, and contention on accounts is realistic.
- Each user pays a few regular payees and merchants (a new one now and then,
  up to a bound), as customers do; the validators would flag paying a new
  counterparty every few seconds as fraud.
- Transfers and payments leave the spending account; the merchant account
  only receives, and refunds.
- Capture, void and refund belong to the merchant account's owner, so a payer
  leaves each authorization in the owner's queue and the owner settles it.
- Every user sends its own X-Forwarded-For address (10.x.y.z, ``--client-ips
  per-user``, the default): when the gateway trusts this machine as a proxy
  (PAYSYS_TRUSTED_PROXIES) its per-IP limit then applies per simulated client,
  not to the one load generator. ``--client-ips shared`` sends no header.
- A transfer answered 201 "failed" (insufficient_funds, say) is a business
  outcome, not an HTTP error. Completed transfers are reported to Locust as a
  request of type "TX" named "transfer completed" (failed ones as "transfer
  failed: <reason>"), timed from the POST until the decision is known, so the
  CSVs carry completed transfers/s next to the HTTP figures.

Every task has one tag: ``transfers`` (transfers, and the deposits that keep payers
funded), ``payments``, ``reads`` or ``auth`` (logging in again); each user's setup
(register, log in, open and fund two accounts) runs whatever the tags. Locust's own
-u/-r/-t (or locust.conf) set the load; the step shape of `make bench` is opt-in, by
adding loadtests/shape.py to -f. BENCH_THINK_MAX_S (default 0.5) bounds each user's
pause between tasks.
"""
import itertools
import os
import random
import time
import uuid
from collections import defaultdict, deque

from locust import FastHttpUser, between, events, tag, task

PASSWORD = "benchmark user password"
CURRENCY = "USD"
OPENING_DEPOSIT_MINOR = 1_000_000  # $10,000 per account: most transfers and payments succeed
TOP_UP_MINOR = (10_000, 100_000)
TRANSFER_MINOR = (1, 5_000)
PAYMENT_MINOR = (100, 20_000)
# Customers pay a few regulars, not everyone: a bounded set of payees and merchants per user,
# below the validators' new-counterparties limit (PAYSYS_NEW_COUNTERPARTIES_PER_10_MIN, 20),
# so fraud_suspected stays the rare outcome it is for real customers.
FAVOURITE_PAYEES = 8
FAVOURITE_MERCHANTS = 5
NEW_FAVOURITE_CHANCE = 0.3
PENDING_AUTHORIZATIONS_PER_MERCHANT = 1_000  # a bound, so a slow merchant cannot grow memory
DECISION_POLL_S = 30  # how long a 202 transaction is polled before it counts as undecided
POLL_INTERVAL_S = 0.2
HISTORY_PAGE = 20
THINK_MAX_S = float(os.environ.get("BENCH_THINK_MAX_S", "0.5"))

MONEY_ACCEPTED = (200, 201, 202)
USER_NUMBERS = itertools.count(1)


class SharedBook:
    """What the simulated users know of each other: accounts to pay, authorizations to settle."""

    def __init__(self):
        self.accounts = []  # (owner number, account id) of every spending and merchant account
        self.merchant_accounts = []  # (owner number, account id)
        self.authorizations = defaultdict(
            lambda: deque(maxlen=PENDING_AUTHORIZATIONS_PER_MERCHANT))

    def join(self, owner, spending_account, merchant_account):
        self.accounts += [(owner, spending_account), (owner, merchant_account)]
        self.merchant_accounts.append((owner, merchant_account))

    def someone_elses_account(self, owner, rng):
        return _pick_other(self.accounts, owner, rng)

    def someone_elses_merchant_account(self, owner, rng):
        return _pick_other(self.merchant_accounts, owner, rng)

    def leave_authorization(self, merchant_account, payment_id, amount_minor):
        self.authorizations[merchant_account].append((payment_id, amount_minor))

    def next_authorization(self, merchant_account):
        queue = self.authorizations[merchant_account]
        return queue.popleft() if queue else None


def _pick_other(pool, owner, rng, attempts=10):
    """A random account of another user, or None while this user is alone."""
    for _ in range(attempts if pool else 0):
        number, account_id = rng.choice(pool)
        if number != owner:
            return account_id
    return None


BOOK = SharedBook()
PER_USER, SHARED = "per-user", "shared"


@events.init_command_line_parser.add_listener
def client_ip_option(parser):
    parser.add_argument(
        "--client-ips", choices=(PER_USER, SHARED), default=PER_USER,
        help="per-user: each simulated user sends its own X-Forwarded-For address, so the "
        "gateway's per-IP rate limit applies per user (when PAYSYS_TRUSTED_PROXIES names this "
        "machine); shared: no header, every user is this machine's one address")


def client_address(number):
    """A distinct private address per simulated client, for the per-IP rate limit."""
    return "10.{}.{}.{}".format(number // 62_500 % 250, number // 250 % 250, number % 250 + 1)


def describe_failure(response):
    """A stable label for a failed answer, so errors group by status and code."""
    if not response.status_code:
        return "connection error: {}".format(type(response.error).__name__)
    code = ""
    try:
        body = response.json()
        code = body.get("code", "") if isinstance(body, dict) else ""
    except Exception:  # noqa: BLE001 - a body that is not JSON still has a status
        pass
    return "HTTP {} {}".format(response.status_code, code).strip()


class BankCustomer(FastHttpUser):
    wait_time = between(0, THINK_MAX_S)

    def on_start(self):
        self.number = next(USER_NUMBERS)
        options = self.environment.parsed_options
        shared = options is not None and getattr(options, "client_ips", PER_USER) == SHARED
        self.address = None if shared else client_address(self.number)
        self.email = "bench-{}@example.test".format(uuid.uuid4().hex)
        self.rng = random.Random()
        self.registered = False
        self.token = None
        self.spending_account = None
        self.merchant_account = None
        self.funded = False
        self.payees = []
        self.merchants = []
        self.ensure_set_up()

    # --- setting up (resumable: a step refused under load is retried by the next task) ---

    def ensure_set_up(self):
        if not self.registered:
            self.registered = self.call("POST", "/v1/auth/register", "/v1/auth/register", body={
                "email": self.email, "password": PASSWORD, "full_name": "Benchmark user"},
                ok=(201,)) is not None
            if not self.registered:
                return False
        if not self.token and not self.log_in():
            return False
        if self.spending_account is None:
            self.spending_account = self.open_account("spending")
        if self.merchant_account is None:
            self.merchant_account = self.open_account("merchant")
        if self.spending_account is None or self.merchant_account is None:
            return False
        if not self.funded:
            self.funded = all(
                self.money("/v1/deposits", "/v1/deposits", {
                    "account_id": account, "amount": OPENING_DEPOSIT_MINOR,
                    "currency": CURRENCY}) is not None
                for account in (self.spending_account, self.merchant_account))
            if self.funded:
                BOOK.join(self.number, self.spending_account, self.merchant_account)
        return self.funded

    def log_in(self):
        body = self.call("POST", "/v1/auth/login", "/v1/auth/login", authorized=False, body={
            "email": self.email, "password": PASSWORD})
        self.token = body["access_token"] if body else None
        return self.token is not None

    def open_account(self, name):
        body = self.call("POST", "/v1/accounts", "/v1/accounts", body={
            "currency": CURRENCY, "name": name}, ok=(201,),
            headers={"Idempotency-Key": str(uuid.uuid4())})
        return body["id"] if body else None

    @property
    def own_accounts(self):
        return (self.spending_account, self.merchant_account)

    def regular(self, favourites, limit, someone_new):
        """Someone this user pays: mostly a regular, now and then a new one (up to ``limit``)."""
        if len(favourites) < limit and (not favourites or
                                        self.rng.random() < NEW_FAVOURITE_CHANCE):
            candidate = someone_new(self.number, self.rng)
            if candidate is not None and candidate not in favourites:
                favourites.append(candidate)
        return self.rng.choice(favourites) if favourites else None

    def payee(self):
        return self.regular(self.payees, FAVOURITE_PAYEES, BOOK.someone_elses_account)

    def merchant(self):
        return self.regular(self.merchants, FAVOURITE_MERCHANTS,
                            BOOK.someone_elses_merchant_account)

    # --- HTTP -------------------------------------------------------------------------

    def call(self, method, path, name, body=None, ok=(200,), authorized=True, headers=None):
        """One request as Locust records it; the JSON answer, or None if it failed."""
        headers = dict(headers or {})
        if self.address:
            headers["X-Forwarded-For"] = self.address
        if authorized and self.token:
            headers["Authorization"] = "Bearer " + self.token
        with self.client.request(method, path, name=name, json=body, headers=headers,
                                 catch_response=True) as response:
            if response.status_code not in ok:
                response.failure(describe_failure(response))
                if response.status_code == 401 and authorized:
                    self.token = None  # expired or revoked: the next task logs in again
                return None
            response.success()
            answer = response.json() if response.content else {}
            location = response.headers.get("Location") if response.status_code == 202 else None
        if location:
            answer["_location"] = location
        return answer

    def money(self, path, name, body):
        """A POST that moves money: a fresh Idempotency-Key, 201/202 (200 for a payment step)."""
        return self.call("POST", path, name, body=body, ok=MONEY_ACCEPTED,
                         headers={"Idempotency-Key": str(uuid.uuid4())})

    def decided(self, transaction):
        """Poll a 202 (pending) transaction until it is decided, within DECISION_POLL_S."""
        deadline = time.monotonic() + DECISION_POLL_S
        while transaction and transaction.get("status") == "pending":
            if time.monotonic() > deadline:
                return transaction
            time.sleep(POLL_INTERVAL_S)
            location = transaction.get("_location") or "/v1/transfers/" + transaction["id"]
            transaction = self.call("GET", location, "/v1/transfers/[id]")
        return transaction

    def record_outcome(self, transaction, started_s):
        """Report a decided transfer to Locust as a TX 'request', for transfers/s in the CSVs."""
        if not transaction or transaction.get("status") == "pending":
            return
        name = ("transfer completed" if transaction["status"] == "completed" else
                "transfer failed: {}".format(transaction.get("failure_reason") or "unknown"))
        self.environment.events.request.fire(
            request_type="TX", name=name, response_time=(time.perf_counter() - started_s) * 1000,
            response_length=0, exception=None, context={})

    # --- the mix ----------------------------------------------------------------------

    @task(10)
    @tag("transfers")
    def transfer(self):
        if not self.ensure_set_up():
            return
        destination = self.payee()
        if destination is None:
            return
        started_s = time.perf_counter()
        transaction = self.money("/v1/transfers", "/v1/transfers", {
            "source_account_id": self.spending_account,
            "destination_account_id": destination,
            "amount": self.rng.randint(*TRANSFER_MINOR), "currency": CURRENCY})
        self.record_outcome(self.decided(transaction), started_s)

    @task(3)
    @tag("transfers")
    def deposit(self):
        if not self.ensure_set_up():
            return
        self.money("/v1/deposits", "/v1/deposits", {
            "account_id": self.rng.choice(self.own_accounts),
            "amount": self.rng.randint(*TOP_UP_MINOR), "currency": CURRENCY})

    @task(3)
    @tag("payments")
    def authorize_payment(self):
        """Pay another user's merchant account in two steps: this is the authorization."""
        if not self.ensure_set_up():
            return
        merchant = self.merchant()
        if merchant is None:
            return
        amount = self.rng.randint(*PAYMENT_MINOR)
        payment = self.money("/v1/payments", "/v1/payments [authorize]", {
            "payer_account_id": self.spending_account, "merchant_account_id": merchant,
            "amount": amount, "currency": CURRENCY, "capture": False})
        if payment and payment.get("status") == "authorized":
            BOOK.leave_authorization(merchant, payment["id"], amount)

    @task(3)
    @tag("payments")
    def settle_authorization(self):
        """As a merchant: capture part of a pending authorization (maybe refund some), or void."""
        if not self.ensure_set_up():
            return
        pending = BOOK.next_authorization(self.merchant_account)
        if pending is None:
            return
        payment_id, amount = pending
        if self.rng.random() < 0.25:
            self.money("/v1/payments/{}/void".format(payment_id), "/v1/payments/[id]/void", None)
            return
        captured = max(1, amount * self.rng.randint(50, 100) // 100)
        payment = self.money("/v1/payments/{}/capture".format(payment_id),
                             "/v1/payments/[id]/capture", {"amount": captured})
        if payment and payment.get("status") == "captured" and self.rng.random() < 0.3:
            self.money("/v1/payments/{}/refund".format(payment_id), "/v1/payments/[id]/refund",
                       {"amount": max(1, captured // 2)})

    @task(2)
    @tag("payments")
    def pay_at_once(self):
        """A one-step payment (capture=true) to another user's merchant account."""
        if not self.ensure_set_up():
            return
        merchant = self.merchant()
        if merchant is None:
            return
        self.money("/v1/payments", "/v1/payments [one-step]", {
            "payer_account_id": self.spending_account, "merchant_account_id": merchant,
            "amount": self.rng.randint(*PAYMENT_MINOR), "currency": CURRENCY, "capture": True})

    @task(6)
    @tag("reads")
    def read_balance(self):
        if self.ensure_set_up():
            self.call("GET", "/v1/accounts/" + self.rng.choice(self.own_accounts),
                      "/v1/accounts/[id]")

    @task(3)
    @tag("reads")
    def read_entries(self):
        if self.ensure_set_up():
            self.call("GET", "/v1/accounts/{}/entries?limit={}".format(
                self.rng.choice(self.own_accounts), HISTORY_PAGE), "/v1/accounts/[id]/entries")

    @task(3)
    @tag("reads")
    def read_transactions(self):
        if self.ensure_set_up():
            self.call("GET", "/v1/transactions?limit={}".format(HISTORY_PAGE), "/v1/transactions")

    @task(1)
    @tag("auth")
    def log_in_again(self):
        """Customers come back: a fresh login (Argon2id on the auth service) now and then."""
        if self.ensure_set_up():
            self.log_in()
