"""The payers of the transfers-only scenarios, made before the load starts: each a user
with a token and one funded USD account. Made here rather than in the locustfile so that
registering (Argon2id) and funding never count in the figures of the run.

    identities = make_payers(url, count=64, deposit_minor=100_000_000)
    Path("payers.json").write_text(json.dumps(identities))   # BENCH_IDENTITIES for Locust
"""
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

PASSWORD = "benchmark user password"
CURRENCY = "USD"
PARALLEL = 8
TIMEOUT_S = 60


def client_address(number):
    """A distinct private address per simulated client, for the per-IP rate limit."""
    return "10.{}.{}.{}".format(number // 62_500 % 250, number // 250 % 250, number % 250 + 1)


def make_payer(url, number, deposit_minor):
    """``{number, address, token, account}`` of a new funded user."""
    session = requests.Session()
    address = client_address(number)
    session.headers["X-Forwarded-For"] = address
    email = "bench-payer-{}@example.test".format(uuid.uuid4().hex)

    def post(path, body, ok, **headers):
        response = session.post(url + path, json=body, headers=headers, timeout=TIMEOUT_S)
        if response.status_code not in ok:
            raise RuntimeError("setting up payer {}: POST {} answered {} {}".format(
                number, path, response.status_code, response.text[:300]))
        return response.json()

    post("/v1/auth/register", {"email": email, "password": PASSWORD,
                               "full_name": "Benchmark payer"}, (201,))
    token = post("/v1/auth/login", {"email": email, "password": PASSWORD},
                 (200,))["access_token"]
    session.headers["Authorization"] = "Bearer " + token
    account = post("/v1/accounts", {"currency": CURRENCY}, (201,))["id"]
    deposit = post("/v1/deposits", {"account_id": account, "amount": deposit_minor,
                                    "currency": CURRENCY}, (201, 202),
                   **{"Idempotency-Key": str(uuid.uuid4())})
    if deposit["status"] == "failed":
        raise RuntimeError("setting up payer {}: the deposit failed: {}".format(
            number, deposit["failure_reason"]))
    return {"number": number, "address": address, "token": token, "account": account}


def make_payers(url, count, deposit_minor, first_number=1):
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda number: make_payer(url, number, deposit_minor),
                             range(first_number, first_number + count)))
