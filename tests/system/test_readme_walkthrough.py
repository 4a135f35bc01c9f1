"""README's walk-through runs as it is written: every shell block of its "Walk-through"
section, one after the other in one bash, against a running system; what they did is then
read back through the API."""
import re
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

README = Path(__file__).resolve().parents[2] / "README.md"
WALK_THROUGH = "## Walk-through"
DEFAULT_URL = "URL=http://127.0.0.1:8000"


def walk_through_blocks():
    """Every ```sh block of README's walk-through, in order (up to the next ``## `` heading)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n" + WALK_THROUGH + "\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```", section, re.DOTALL | re.MULTILINE)


def test_the_walk_through_runs_verbatim_and_the_payment_is_captured(system):
    blocks = walk_through_blocks()
    assert len(blocks) >= 3, blocks  # the deposit, the batch, the payment at least
    script = "\n".join(blocks)
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
    # What README says the replay and the refused amount print.
    assert re.search(r"idempotent-replayed: true\r?\n", done.stdout, re.IGNORECASE), done.stdout
    assert "\nvalidation_error\n" in done.stdout, done.stdout
    token, payment_id, jpy_account = done.stdout.split()[-3:]
    headers = {"Authorization": "Bearer " + token}

    payment = system.get("/v1/payments/" + payment_id, headers=headers)
    assert payment.status_code == 200, payment.text
    assert payment.json()["status"] == "captured"
    assert payment.json()["captured_amount"] == 1500
    # The deposit of 5000 JPY, 100 out and 40 back by the atomic batch.
    account = system.get("/v1/accounts/" + jpy_account, headers=headers).json()
    assert account["balance"] == 5000 - 100 + 40
