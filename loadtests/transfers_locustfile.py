"""The transfers-only workload of `make bench`: payers who do nothing but move money.

    BENCH_IDENTITIES=payers.json locust -f loadtests/transfers_locustfile.py \
        --host http://127.0.0.1:8000 --headless -u 64 -r 64 -t 30s

The payers (users with a token and a funded account) are made beforehand by
loadtests/bench_identities.py and named by BENCH_IDENTITIES, so the run measures money
movement alone. Each simulated user is one payer; it sends transfers to a few regular
payees among the other payers, back to back (a saturating load), or at
BENCH_RATE_PER_USER transfers a second (a fixed offered load: the half-load run). With
BENCH_BATCH_SIZE > 0 each task is one POST /v1/transfers/batch of that many transfers.

Each decided transfer (or batch) is also reported as a request of type "TX" named after
its outcome, timed from the POST until the decision is known. The benchmark counts the
completed transfers in the database; these rows are for the latency of a decision.
"""
import itertools
import json
import os
import random
import time
import uuid

from locust import FastHttpUser, task

CURRENCY = "USD"
TRANSFER_MINOR = (1, 5_000)
BATCH_TRANSFER_MINOR = (1, 100)  # a thousand to a request: small, so the funds last
# A few regular payees each, below the validators' new-counterparties limit (20 in ten
# minutes), as real customers pay their regulars rather than someone new every time.
PAYEES = 8
DECISION_POLL_S = 30
POLL_INTERVAL_S = 0.2
MONEY_ACCEPTED = (201, 202)

RATE_PER_USER = float(os.environ.get("BENCH_RATE_PER_USER", "0"))
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "0"))
PAYERS = json.loads(open(os.environ["BENCH_IDENTITIES"], encoding="utf-8").read())
NEXT_PAYER = itertools.cycle(PAYERS)


class Payer(FastHttpUser):
    def wait_time(self):
        """Back to back (a saturating load), or arrivals of a Poisson process at
        BENCH_RATE_PER_USER a second: independent of how long the last one took, and
        never in step with the other users (users started together and paced alike would
        all send at once, a burst every period, and measure the burst)."""
        if not RATE_PER_USER:
            return 0
        now = time.monotonic()
        self.due = max(self.due, now - 1 / RATE_PER_USER) + self.rng.expovariate(RATE_PER_USER)
        return max(0.0, self.due - now)

    def on_start(self):
        self.payer = next(NEXT_PAYER)
        self.rng = random.Random()
        if RATE_PER_USER:
            # Locust runs a user's first task at once: paced users would all send their
            # first transfer together, a burst the offered rate never has. The first one
            # arrives as the rest do, after a wait of the Poisson process.
            time.sleep(self.rng.expovariate(RATE_PER_USER))
        self.due = time.monotonic()
        # The same regulars in every run of a benchmark (the next payers in the list): the
        # validators count new counterparties over ten minutes, and runs follow each other.
        index = PAYERS.index(self.payer)
        self.payees = [PAYERS[(index + step) % len(PAYERS)]["account"]
                       for step in range(1, min(PAYEES, len(PAYERS) - 1) + 1)]
        self.headers = {"X-Forwarded-For": self.payer["address"],
                        "Authorization": "Bearer " + self.payer["token"]}

    def transfer_body(self, amounts):
        return {"source_account_id": self.payer["account"],
                "destination_account_id": self.rng.choice(self.payees),
                "amount": self.rng.randint(*amounts), "currency": CURRENCY}

    @task
    def move_money(self):
        if not self.payees:
            return
        started_s = time.perf_counter()
        if BATCH_SIZE:
            batch = self.post("/v1/transfers/batch", {"transfers": [
                self.transfer_body(BATCH_TRANSFER_MINOR) for _ in range(BATCH_SIZE)]})
            batch = self.decided(batch, "/v1/transfers/batches/[id]")
            if batch and batch["status"] != "pending":
                self.report("batch of {} decided".format(BATCH_SIZE), started_s)
            return
        transaction = self.post("/v1/transfers", self.transfer_body(TRANSFER_MINOR))
        transaction = self.decided(transaction, "/v1/transfers/[id]")
        if transaction and transaction["status"] != "pending":
            self.report("transfer completed" if transaction["status"] == "completed" else
                        "transfer failed: {}".format(transaction["failure_reason"]), started_s)

    def post(self, path, body):
        """A money-moving POST under a fresh key; its JSON answer (Location kept), or None."""
        headers = dict(self.headers, **{"Idempotency-Key": str(uuid.uuid4())})
        with self.client.post(path, json=body, headers=headers, name=path,
                              catch_response=True) as response:
            if response.status_code not in MONEY_ACCEPTED:
                response.failure("HTTP {}".format(response.status_code))
                return None
            response.success()
            answer = response.json()
            if response.status_code == 202:
                answer["_location"] = response.headers.get("Location")
        return answer

    def decided(self, resource, name):
        """Poll a 202 (pending) resource at its Location until it is decided."""
        deadline = time.monotonic() + DECISION_POLL_S
        while resource and resource.get("status") == "pending":
            if time.monotonic() > deadline:
                return resource
            time.sleep(POLL_INTERVAL_S)
            with self.client.get(resource["_location"], headers=self.headers, name=name,
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure("HTTP {}".format(response.status_code))
                    return None
                resource = dict(response.json(), _location=resource["_location"])
        return resource

    def report(self, name, started_s):
        self.environment.events.request.fire(
            request_type="TX", name=name, response_time=(time.perf_counter() - started_s) * 1000,
            response_length=0, exception=None, context={})
