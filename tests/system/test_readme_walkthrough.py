"""README's walk-through runs as it is written: its shell blocks of "Using the API" and
"Payments", one after the other in one bash, against the running system; what they did
is then read back through the API."""
import re
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

README = Path(__file__).resolve().parents[2] / "README.md"
WALK_THROUGH = ("### Using the API", "### Payments")
DEFAULT_URL = "URL=http://127.0.0.1:8000"


def shell_block(section):
    """The first ```sh block after the heading ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n" + section + "\n")
    return re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL).group(1)


def test_the_walk_through_runs_verbatim_and_the_payment_is_captured(system):
    script = "\n".join(shell_block(section) for section in WALK_THROUGH)
    assert script.count(DEFAULT_URL) == 1  # the one line this test points elsewhere
    # Names of its own, so a rerun in the same system meets no earlier registration.
    suffix = uuid.uuid4().hex[:8]
    script = (script.replace(DEFAULT_URL, "URL=" + system.url)
              .replace("ada@example.com", "ada-{}@example.com".format(suffix))
              .replace("shop@example.com", "shop-{}@example.com".format(suffix)))
    script += '\nprintf "\\n%s %s %s\\n" "$TOKEN" "$PAYMENT" "$ACCOUNT"\n'
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    token, payment_id, jpy_account = done.stdout.split()[-3:]
    headers = {"Authorization": "Bearer " + token}

    payment = system.get("/v1/payments/" + payment_id, headers=headers)
    assert payment.status_code == 200, payment.text
    assert payment.json()["status"] == "captured"
    assert payment.json()["captured_amount"] == 1500
    # The deposit of 5000 JPY, 100 out and 40 back by the atomic batch.
    account = system.get("/v1/accounts/" + jpy_account, headers=headers).json()
    assert account["balance"] == 5000 - 100 + 40
