"""Errors raised in a service come back to the gateway as the same typed exception."""
import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from shared import errors


@pytest.mark.parametrize("error", [
    errors.NotFound("no such account"),
    errors.Conflict("version changed", code="stale_version"),
    errors.ValidationFailed("bad body", errors={"amount": ["must be an integer"]}),
    errors.RateLimited("slow down", retry_after_s=7),
    errors.ServiceUnavailable("ledger is down", retry_after_s=3),
])
def test_an_error_survives_the_rpc_round_trip_with_its_status_and_code(error):
    received = deserialize(serialize(error))
    assert type(received) is type(error)
    assert (received.status, received.code, received.detail) == (
        error.status, error.code, error.detail)
    assert vars(received) == vars(error)


def test_an_unregistered_error_stays_a_remote_error():
    assert isinstance(deserialize(serialize(KeyError("x"))), RemoteError)
