import base64
import datetime
import hashlib
import json

import jwt
import pytest

from handler.verify import (
    MalformedEvent,
    Unauthorized,
    UnsupportedMediaType,
    WebhookVerifier,
    check_content_type,
)
from tests.webhooks import event, sign

KEYS = {"devkey": "secret", "second": "second-secret-long-enough-for-hs256!!"}
verifier = WebhookVerifier(KEYS)
BODY = json.dumps(event("room_started", "r", "RM_1")).encode()


def test_a_correctly_signed_event_is_parsed():
    assert verifier.verify(BODY, sign(BODY)).event == "room_started"


def test_either_key_verifies_its_own_tokens():
    assert verifier.verify(BODY, sign(BODY, "second", KEYS["second"])).room.sid == "RM_1"


def test_a_bearer_prefix_is_tolerated():
    assert verifier.verify(BODY, "Bearer " + sign(BODY)).event == "room_started"


@pytest.mark.parametrize("token, message", [
    (None, "missing Authorization token"),
    ("", "missing Authorization token"),
    ("not-a-jwt", "not a JWT"),
])
def test_missing_or_garbage_tokens(token, message):
    with pytest.raises(Unauthorized, match=message):
        verifier.verify(BODY, token)


def test_unknown_key():
    with pytest.raises(Unauthorized, match="unknown API key"):
        verifier.verify(BODY, sign(BODY, "other", "other-secret"))


def test_token_for_a_known_key_signed_with_the_wrong_secret():
    with pytest.raises(Unauthorized, match="signature is invalid"):
        verifier.verify(BODY, sign(BODY, "devkey", "forged"))


def test_expired_token():
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(BODY, sign(BODY, ttl=datetime.timedelta(minutes=-5)))


def test_token_without_expiry_is_refused():
    digest = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    token = jwt.encode({"iss": "devkey", "sha256": digest}, "secret", algorithm="HS256")
    with pytest.raises(Unauthorized, match="invalid"):
        verifier.verify(BODY, token)


def test_body_altered_after_signing():
    with pytest.raises(Unauthorized, match="does not match"):
        verifier.verify(BODY.replace(b"RM_1", b"RM_2"), sign(BODY))


def test_token_without_body_hash():
    token = jwt.encode({"iss": "devkey", "exp": 9999999999}, "secret", algorithm="HS256")
    with pytest.raises(Unauthorized, match="no body hash"):
        verifier.verify(BODY, token)


def test_signed_invalid_utf8_is_malformed_not_unauthorized():
    body = b'{"event": "room_started\xff"}'
    with pytest.raises(MalformedEvent, match="UTF-8"):
        verifier.verify(body, sign(body))


@pytest.mark.parametrize("body", [b"[]", b"{", b'{"event": 5}', b'{"room": {"sid": "x"}}'])
def test_signed_bodies_that_are_not_webhook_events(body):
    with pytest.raises(MalformedEvent):
        verifier.verify(body, sign(body))


@pytest.mark.parametrize("header", ["application/webhook+json", "application/json; charset=utf-8",
                                    "Application/JSON"])
def test_accepted_content_types(header):
    check_content_type(header)


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types(header):
    with pytest.raises(UnsupportedMediaType):
        check_content_type(header)
