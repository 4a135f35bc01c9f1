"""The broker's JSON codec: orjson underneath, kombu's messages on the wire."""
import datetime
import decimal

import kombu.serialization
import pytest
from kombu.utils import json as kombu_json
from nameko import serialization

from shared import wire_json
from shared.config import load_config

MESSAGES = [
    {"args": [], "kwargs": {"items": [{"id": "t-1", "amount": 1250, "hold": False,
                                       "source": None}]}},
    {"at": datetime.datetime(2026, 11, 29, 12, 30, 5, 123456, tzinfo=datetime.timezone.utc)},
    {"day": datetime.date(2026, 11, 29), "rate": decimal.Decimal("0.0125")},
    {"raw": b"\x00\xffbinary", "text": b"plain"},
    {"beyond_64_bits": 2 ** 70, "negative": -(2 ** 70)},
    {1: "an integer key", "nested": {2: [True, None, 1.5]}},
    {"unicode": "Zürich → 東京", "quote": "a \"quoted\" \\ text"},
    [],
    "a bare string",
]


@pytest.mark.parametrize("message", MESSAGES)
def test_kombu_reads_what_it_writes(message):
    assert kombu_json.loads(wire_json.dumps(message)) == kombu_json.loads(kombu_json.dumps(message))


@pytest.mark.parametrize("message", MESSAGES)
def test_it_reads_what_kombu_writes(message):
    assert wire_json.loads(kombu_json.dumps(message)) == kombu_json.loads(kombu_json.dumps(message))


def test_a_datetime_comes_back_a_datetime_not_a_string():
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert wire_json.loads(wire_json.dumps({"at": at})) == {"at": at}


def test_a_body_arrives_as_bytes_memoryview_or_str():
    body = wire_json.dumps({"amount": 5})
    for form in (body, memoryview(body), bytearray(body), body.decode()):
        assert wire_json.loads(form) == {"amount": 5}


def test_a_broken_body_is_a_decode_error_as_with_kombu():
    with pytest.raises(ValueError):
        wire_json.loads(b'{"amount": ')


def test_the_repository_config_installs_it_as_nameko_json():
    saved = kombu.serialization.registry._encoders["json"], \
        kombu.serialization.registry._decoders["application/json"]
    try:
        serializer, accept = serialization.setup(load_config())
        assert (serializer, accept) == ("json", ["json"])
        content_type, encoding, body = kombu.serialization.dumps({"amount": 5}, serializer="json")
        assert (content_type, encoding) == ("application/json", "utf-8")
        assert kombu.serialization.registry._encoders["json"][2] is wire_json.dumps
        assert kombu.serialization.loads(body, content_type, encoding) == {"amount": 5}
    finally:
        kombu.serialization.registry._encoders["json"] = saved[0]
        kombu.serialization.registry._decoders["application/json"] = saved[1]
