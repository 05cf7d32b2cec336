"""The APNs client against a real HTTP/2 TLS server on loopback: request shape, one
connection, and what each answer means (tests/wallet/test_apns_provider_token.py covers
the shared provider token, test_apns_answers.py what a batch does with the answers)."""

import json
import time

import jwt
import pytest

from tests.wallet.conftest import APNS_KEY_ID, PASS_TYPE_ID, TEAM_ID
from wallet.apple import apns
from wallet.errors import PermanentError, ProviderError, TransientError

pytestmark = pytest.mark.django_db


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


def test_unregistered_and_bad_device_tokens(apns_server):
    apns_server.reply("dead", (410, "Unregistered"))
    apns_server.reply("bad", (400, "BadDeviceToken"))
    apns_server.reply("other-topic", (400, "DeviceTokenNotForTopic"))
    client = apns.shared_client()
    assert client.push("dead") is apns.PushResult.UNREGISTERED
    # Only reported: which environment said so decides (notify.notify_devices()).
    assert client.push("bad") is apns.PushResult.BAD_TOKEN
    assert client.push("other-topic") is apns.PushResult.BAD_TOKEN


@pytest.mark.parametrize("status,reason", [(429, "TooManyRequests"), (503, "ServiceUnavailable"),
                                           (500, "InternalServerError")])  # fmt: skip
def test_throttling_and_server_errors_are_transient(apns_server, status, reason):
    apns_server.reply("t", (status, reason))
    with pytest.raises(TransientError, match=reason):
        apns.shared_client().push("t")


def test_a_per_push_client_error_is_permanent(apns_server):
    apns_server.reply("t", (413, "PayloadTooLarge"))
    with pytest.raises(PermanentError, match="413 PayloadTooLarge") as caught:
        apns.shared_client().push("t")
    assert not isinstance(caught.value, ProviderError)


@pytest.mark.parametrize(
    "status,reason,setting",
    [
        (403, "BadCertificate", "APPLE_PASS_CERT"),
        (403, "BadCertificateEnvironment", "APNS_BASE_URL"),
        (400, "BadTopic", "APPLE_PASS_TYPE_ID"),
        (400, "TopicDisallowed", "APPLE_PASS_TYPE_ID"),
        (403, "MissingProviderToken", "APNS_KEY_FILE"),
        (403, "Forbidden", "permissions"),
        (429, "TooManyProviderTokenUpdates", "APNS_KEY_ID"),
    ],
)
def test_provider_wide_refusals_name_what_to_fix(apns_server, status, reason, setting):
    apns_server.reply("t", (status, reason))
    with pytest.raises(apns.ApnsRefused, match=f"{status} {reason}") as caught:
        apns.shared_client().push("t")
    assert setting in str(caught.value)
    # None of these is about the provider token: no new token was minted for them.
    assert apns.shared_client().token.minted == 1


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
