"""Webhook secrets at rest: sealed in the table, opened only with the key file, still
signing every delivery; secrets stored in clear before the upgrade keep working and get
sealed. Real PostgreSQL, a real receiver, real key files."""
import stat
import uuid
from unittest.mock import Mock

import pytest
from cryptography.fernet import Fernet, InvalidToken
from nameko.containers import ServiceContainer
from nameko.testing.services import worker_factory
from nameko.timer import Timer
from sqlalchemy import insert, select, text

from paysys import cli
from services.notifications import messages, records, webhook_records
from services.notifications.dependencies import WebhookSecrets
from services.notifications.secret_box import (
    SecretBox,
    ensure_webhook_key,
    key_file,
    load_webhook_key,
)
from services.notifications.service import NotificationsService
from services.notifications.settings import Settings
from shared.config import load_config
from shared.db import DatabaseAccess
from tests.support.notifications import (  # noqa: F401 - fixtures
    FAST,
    clean_notifications,
    deliveries,
    drive,
    event,
    make_worker,
    publish,
    receiver,
    secret_box,
    settings,
    services,
    sink,
    webhook_key_config,
)

EVENTS = ["transaction.completed"]


def table_dump(engine):
    """Every webhook row as text, as a backup or a stolen copy would hold it."""
    with engine.connect() as connection:
        return "\n".join(connection.execute(
            text("SELECT w::text FROM notifications.webhooks w")).scalars())


def stored_secret(engine, webhook_id):
    with engine.connect() as connection:
        return connection.execute(select(records.webhooks.c.secret).where(
            records.webhooks.c.id == webhook_id)).scalar_one()


def delivered(engine):
    return lambda: all(row.status == "delivered" for row in deliveries(engine))


def test_the_secret_is_not_in_the_table_and_still_signs_every_delivery(
        make_worker, services, receiver, engine):
    worker = make_worker(email_enabled=False)
    user = services.auth.add()
    hook = worker.create_webhook(user, receiver.url, EVENTS)
    dump = table_dump(engine)
    assert hook["id"] in dump
    assert hook["secret"] not in dump and "whsec_" not in dump
    assert hook["secret"][len("whsec_"):] not in dump  # not even its random part

    publish(worker, event([user]))
    drive(worker, until=delivered(engine))
    (request,) = receiver.wait_for(1)
    assert messages.verify_signature(hook["secret"], request.body,
                                     request.headers["X-Signature"])


def test_two_webhooks_with_one_secret_value_are_sealed_differently(secret_box):
    # Fernet seals with a fresh IV each time: equal secrets do not show as equal rows.
    assert secret_box.seal("whsec_same") != secret_box.seal("whsec_same")
    assert secret_box.open(secret_box.seal("whsec_same")) == "whsec_same"


def test_another_key_opens_nothing_and_its_deliveries_wait_for_the_right_key(
        make_worker, services, receiver, engine, tmp_path):
    user = services.auth.add()
    hook = make_worker(email_enabled=False).create_webhook(user, receiver.url, EVENTS)
    stranger = load_webhook_key(webhook_key_config(tmp_path / "other"))
    with pytest.raises(InvalidToken):
        stranger.open(stored_secret(engine, hook["id"]))

    # A process started with the wrong key file sends nothing it could not sign: deferred
    # (our side's fault, not the receiver's), so the right key heals it.
    wrong = worker_factory(NotificationsService, db=DatabaseAccess(engine, "notifications"),
                           rpc=services, secret_box=stranger,
                           settings=settings(**dict(FAST, email_enabled=False)))
    publish(wrong, event([user]))
    drive(wrong, until=lambda: deliveries(engine)[0].attempts >= 1)
    row = deliveries(engine)[0]
    assert (row.status, row.failures) == ("pending", 0)
    assert "does not open with this key file" in row.last_error
    assert receiver.received == []


def test_a_secret_stored_in_clear_before_the_upgrade_still_signs_and_gets_sealed(
        make_worker, services, receiver, engine, secret_box):
    user = services.auth.add()
    legacy_id, legacy_secret = str(uuid.uuid4()), "whsec_" + uuid.uuid4().hex
    with engine.begin() as connection:  # what the previous version wrote
        connection.execute(insert(records.webhooks).values(
            id=legacy_id, owner_id=user, url=receiver.url, events=EVENTS,
            secret=legacy_secret))
    worker = make_worker(email_enabled=False)
    publish(worker, event([user]))
    drive(worker, until=delivered(engine))
    first = receiver.wait_for(1)[0]
    assert messages.verify_signature(legacy_secret, first.body, first.headers["X-Signature"])

    # The service seals it when it starts (and every few minutes): once, and only it.
    sealed_before = worker.create_webhook(services.auth.add(), receiver.url, EVENTS)
    kept = stored_secret(engine, sealed_before["id"])
    assert worker.seal_clear_secrets() == 1
    assert worker.seal_clear_secrets() == 0
    assert stored_secret(engine, sealed_before["id"]) == kept
    assert legacy_secret not in table_dump(engine)
    assert secret_box.open(stored_secret(engine, legacy_id)) == legacy_secret

    publish(worker, event([user]))
    drive(worker, until=lambda: len(receiver.received) == 2 and delivered(engine)())
    second = receiver.received[1]
    assert messages.verify_signature(legacy_secret, second.body, second.headers["X-Signature"])


def test_looking_for_clear_secrets_reads_their_partial_index(engine):
    # The query's predicate must be the index's, or every look is a scan of all webhooks.
    query = select(records.webhooks.c.id).where(webhook_records.CLEAR_SECRET)
    compiled = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(connection.execute(text("EXPLAIN " + compiled)).scalars())
    assert "webhooks_clear_secret" in plan, plan


def test_sealing_runs_at_start_and_then_now_and_again():
    container = ServiceContainer(NotificationsService, load_config())
    (sealer,) = [entry for entry in container.entrypoints
                 if isinstance(entry, Timer) and entry.method_name == "seal_clear_secrets"]
    assert sealer.eager is True and sealer.interval == 300


# --- the key file --------------------------------------------------------------------------


def test_the_key_file_is_made_once_private_to_its_owner(tmp_path):
    config = load_config()
    config["notifications"]["webhook_key_file"] = str(tmp_path / "k" / "webhook.key")
    assert ensure_webhook_key(config) is True
    path = key_file(config)
    made = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_webhook_key(config) is False and path.read_bytes() == made
    Fernet(made.strip())  # a valid Fernet key


def test_by_default_the_key_lives_with_the_other_keys_in_the_run_dir(tmp_path):
    config = load_config()
    config["supervisor"]["run_dir"] = str(tmp_path)
    assert key_file(config) == tmp_path / "keys" / "webhook-secrets.key"


def test_paysys_keys_makes_the_webhook_key_beside_the_others(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PAYSYS_RUN_DIR", str(tmp_path))
    for name in ("PAYSYS_JWT_PRIVATE_KEY_FILE", "PAYSYS_JWT_PUBLIC_KEY_FILE",
                 "PAYSYS_VALIDATOR_KEYS_DIR", "PAYSYS_WEBHOOK_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["keys"]) == 0
    assert "Created the key of webhook secrets" in capsys.readouterr().out
    assert (tmp_path / "keys" / "webhook-secrets.key").exists()
    assert cli.main(["keys"]) == 0
    assert "Kept the key of webhook secrets" in capsys.readouterr().out


def test_a_key_file_of_several_keys_seals_with_the_first_and_opens_with_any(tmp_path):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    path = tmp_path / "webhook-secrets.key"
    path.write_bytes(old + b"\n")
    config = load_config()
    config["notifications"]["webhook_key_file"] = str(path)
    sealed_with_old = load_webhook_key(config).seal("whsec_old")
    path.write_bytes(new + b"\n" + old + b"\n")
    rotated = load_webhook_key(config)
    assert rotated.open(sealed_with_old) == "whsec_old"
    assert SecretBox([Fernet(new)]).open(rotated.seal("whsec_new")) == "whsec_new"


def test_the_service_refuses_to_start_without_its_key(tmp_path):
    config = load_config()
    config["notifications"]["webhook_key_file"] = str(tmp_path / "missing.key")
    container = Mock(config=config)  # held here: the provider holds it weakly
    with pytest.raises(RuntimeError, match="missing.key"):
        WebhookSecrets().bind(container, "secret_box").setup()
    (tmp_path / "garbage.key").write_text("not a key\n")
    config["notifications"]["webhook_key_file"] = str(tmp_path / "garbage.key")
    with pytest.raises(ValueError, match="garbage.key"):
        WebhookSecrets().bind(container, "secret_box").setup()
