"""What the notifications service sends: webhook bodies, their signature, e-mail content."""
import hashlib
import hmac
import json

import pytest

from services.notifications import messages


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body():
    body = messages.webhook_body({"id": "e1", "type": "transaction.completed",
                                  "created_at": "2026-03-01T12:00:00Z", "data": {"amount": 5}})
    expected = hmac.new(b"whsec_k", body, hashlib.sha256).hexdigest()
    assert messages.signature("whsec_k", body) == "sha256=" + expected
    assert messages.verify_signature("whsec_k", body, "sha256=" + expected)
    assert not messages.verify_signature("whsec_k", body, "sha256=" + "0" * 64)
    assert not messages.verify_signature("whsec_k", body, None)


def test_the_body_is_compact_json_of_exactly_the_event():
    event = {"id": "e1", "type": "transaction.failed", "created_at": "t",
             "data": {"description": "café", "amount": 10**15}}
    raw = messages.webhook_body(event)
    assert json.loads(raw) == event
    assert b" " not in raw.replace("café".encode(), b"")
    assert "café".encode() in raw


@pytest.mark.parametrize("amount, currency, text", [
    (1234, "USD", "12.34 USD"), (5, "EUR", "0.05 EUR"), (100000000, "GBP", "1,000,000.00 GBP"),
    (500, "JPY", "500 JPY"), (1234, "KWD", "1.234 KWD"), (-250, "USD", "-2.50 USD"),
    (None, "USD", None),
])
def test_money_is_shown_in_the_currencys_major_unit(amount, currency, text):
    assert messages.money(amount, currency) == text


def test_an_email_has_a_subject_a_body_and_headers_for_dedupe():
    event = {"id": "ev-1", "type": "transaction.completed", "created_at": "2026-03-01T12:00:00Z",
             "data": {"id": "tx-1", "type": "deposit", "status": "completed", "amount": 1050,
                      "currency": "EUR", "destination_account_id": "acc-9",
                      "failure_reason": None, "description": None}}
    mail = messages.email(event, "d-1", "ada@example.test", "paysys <n@paysys.local>")
    assert mail["Subject"] == "Deposit of 10.50 EUR completed"
    assert (mail["To"], mail["From"]) == ("ada@example.test", "paysys <n@paysys.local>")
    assert mail["Message-ID"] == "<d-1@notifications.paysys>"
    assert mail["X-Paysys-Event-Id"] == "ev-1"
    body = mail.get_content()
    assert "tx-1" in body and "acc-9" in body and "10.50 EUR" in body and "ev-1" in body
    assert "Reason" not in body and "None" not in body


def test_payment_emails_name_what_was_captured_or_refunded():
    data = {"id": "p-1", "status": "partially_refunded", "amount": 1000,
            "captured_amount": 800, "refunded_amount": 300, "currency": "USD"}
    captured = messages.email({"id": "e", "type": "payment.captured", "data": data}, "d",
                              "a@b.test", "x@y.test")
    refunded = messages.email({"id": "e", "type": "payment.refunded", "data": data}, "d",
                              "a@b.test", "x@y.test")
    assert captured["Subject"] == "Payment of 8.00 USD captured"
    assert refunded["Subject"] == "Payment refunded: 3.00 USD"
    assert "p-1" in refunded.get_content()


def test_an_email_of_an_event_without_data_still_reads_well():
    mail = messages.email({"id": "e", "type": "transaction.failed", "data": None}, "d",
                          "a@b.test", "x@y.test")
    assert mail["Subject"] == "Transaction of an unknown amount failed"
