"""The APNs client against a real HTTP/2 TLS server on loopback."""

import json
import time

import jwt
import pytest
import time_machine

from tests.wallet.conftest import APNS_KEY_ID, PASS_TYPE_ID, TEAM_ID
from wallet.apple import apns
from wallet.errors import PermanentError, TransientError


def claims(request, chain):
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "bearer"
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == APNS_KEY_ID
    return jwt.decode(token, chain.apns_key.public_key(), algorithms=["ES256"])


def test_push_request_shape(apns_server, chain):
    client = apns.shared_client()
    assert client.push("a" * 64) is apns.PushResult.SENT
    (request,) = apns_server.requests
    assert request.headers[":method"] == "POST"
    assert request.path == "/3/device/" + "a" * 64
    assert request.headers["apns-topic"] == PASS_TYPE_ID
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert json.loads(request.body) == {}
    payload = claims(request, chain)
    assert payload["iss"] == TEAM_ID
    assert abs(payload["iat"] - time.time()) < 60


def test_many_pushes_share_one_connection_and_one_token(apns_server, chain):
    client = apns.shared_client()
    for n in range(25):
        assert client.push(f"{n:064x}") is apns.PushResult.SENT
    # A later batch of the same run gets the same client.
    assert apns.shared_client() is client
    client.push("f" * 64)
    assert apns_server.connections == 1
    assert len({r.connection for r in apns_server.requests}) == 1
    assert len({r.headers["authorization"] for r in apns_server.requests}) == 1
    assert client.token.minted == 1


def test_provider_token_renewed_after_30_minutes_not_per_request(apns_server, chain):
    client = apns.shared_client()
    client.push("a" * 64)
    with time_machine.travel(time.time() + 29 * 60, tick=True):
        client.push("a" * 64)
    with time_machine.travel(time.time() + 31 * 60, tick=True):
        client.push("a" * 64)
    tokens = [r.headers["authorization"] for r in apns_server.requests]
    assert tokens[0] == tokens[1] != tokens[2]


def test_unregistered_and_bad_device_tokens(apns_server):
    apns_server.reply("dead", (410, "Unregistered"))
    apns_server.reply("bad", (400, "BadDeviceToken"))
    client = apns.shared_client()
    assert client.push("dead") is apns.PushResult.UNREGISTERED
    assert client.push("bad") is apns.PushResult.UNREGISTERED


@pytest.mark.parametrize("status,reason", [(429, "TooManyRequests"), (503, "ServiceUnavailable"),
                                           (500, "InternalServerError")])  # fmt: skip
def test_throttling_and_server_errors_are_transient(apns_server, status, reason):
    apns_server.reply("t", (status, reason))
    with pytest.raises(TransientError, match=reason):
        apns.shared_client().push("t")


def test_expired_provider_token_is_renewed_once(apns_server, chain):
    apns_server.reply("t", (403, "ExpiredProviderToken"))
    client = apns.shared_client()
    assert client.push("t") is apns.PushResult.SENT
    first, second = apns_server.requests
    assert first.headers["authorization"] != second.headers["authorization"]
    claims(second, chain)
    # Refused twice in a row: a real configuration problem, not retried forever.
    apns_server.reply("u", (403, "InvalidProviderToken"), (403, "InvalidProviderToken"))
    with pytest.raises(PermanentError, match="InvalidProviderToken"):
        client.push("u")


def test_other_client_errors_are_permanent(apns_server):
    apns_server.reply("t", (400, "BadTopic"))
    with pytest.raises(PermanentError, match="400 BadTopic"):
        apns.shared_client().push("t")


def test_unreachable_server_is_transient(apple):
    # A TransientError the wallet kind turns into a paused batch.
    with pytest.raises(apns.ApnsUnreachable, match="APNs unreachable"):
        apns.shared_client().push("t")


def test_untrusted_server_certificate_is_refused(apns_server, apple):
    apple.APNS_CA_FILE = ""  # system store: the test CA is not in it
    with pytest.raises(TransientError):
        apns.shared_client().push("t")
    assert apns_server.requests == []


def test_certificate_auth_when_no_key_file(apns_server, apple):
    apple.APNS_KEY_FILE = ""
    client = apns.shared_client()
    assert client.token is None
    assert client.push("a" * 64) is apns.PushResult.SENT
    assert "authorization" not in apns_server.requests[0].headers
