"""Every ESP webhook URL against anonymous and malformed requests (emails.webhooks.guard):
a 4xx, never a 500, for a GET, missing or wrong credentials and bodies of any shape; one
short log line per refusal, no traceback; and a limit per client address."""

import base64
import json
import logging

import pytest
from django.test import Client

from bulkjobs.models import RateBucket
from emails.models import EmailSuppression
from emails.webhooks import tracking_urlpatterns

pytestmark = pytest.mark.django_db

SECRET = "esp-hook:Zq8-not-a-real-secret"
URLS = ["/emails/anymail/" + str(pattern.pattern) for pattern in tracking_urlpatterns()]
GOOD = {"Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode()}
WRONG = {"Authorization": "Basic " + base64.b64encode(b"esp-hook:guess").decode()}
BODIES = {
    "empty object": "{}",
    "nested objects": '{"a":' * 50 + "1" + "}" * 50,
    "deeply nested lists": "[" * 100_000 + "]" * 100_000,
    "a list of numbers": "[1, 2, 3]",
    "a list of odd events": '[{"event": {"x": [null]}, "msg": 3, "RecordType": []}]',
    "a string": '"bounce"',
    "not JSON": "\x00{not json",
    "huge number": "1" * 5000,
}


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": "k"}
    settings.ESP_WEBHOOK_RATE_LIMIT = "0"


def test_every_tracking_url_is_covered():
    assert len(URLS) >= 14
    assert "/emails/anymail/postmark/tracking/" in URLS


def lines_of(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def assert_one_short_line(caplog):
    [record] = lines_of(caplog)
    assert record.exc_info is None and record.exc_text is None
    assert len(record.getMessage()) < 300
    assert "Traceback" not in record.getMessage()


@pytest.mark.parametrize("url", URLS)
def test_a_get_is_refused_with_one_line(url, caplog):
    response = Client(raise_request_exception=False).get(url)

    assert response.status_code == 405
    assert_one_short_line(caplog)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("headers", [{}, WRONG], ids=["no credentials", "wrong credentials"])
def test_missing_or_wrong_credentials_are_refused_with_one_line(url, headers, caplog):
    response = Client(raise_request_exception=False).post(
        url, "{}", content_type="application/json", headers=headers
    )

    assert 400 <= response.status_code < 500
    assert_one_short_line(caplog)
    assert not EmailSuppression.objects.exists()


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_malformed_bodies_with_the_right_credentials_never_give_a_500(url, body, caplog):
    response = Client(raise_request_exception=False).post(
        url, body, content_type="application/json", headers=GOOD
    )

    assert response.status_code < 500
    if response.status_code >= 400:
        assert_one_short_line(caplog)
    else:
        assert lines_of(caplog) == []
    assert not EmailSuppression.objects.exists()


def test_each_address_is_limited_and_the_excess_is_not_logged(settings, caplog):
    settings.ESP_WEBHOOK_RATE_LIMIT = "5/min"
    url = "/emails/anymail/postmark/tracking/"
    client = Client(raise_request_exception=False)

    def post(address):
        return client.post(
            url, "{}", content_type="application/json", headers=WRONG, REMOTE_ADDR=address
        )

    answers = [post("203.0.113.7").status_code for _ in range(8)]
    assert answers == [400] * 5 + [429] * 3
    assert len(lines_of(caplog)) == 5
    # Another address has its own budget; an IPv6 client's whole /64 shares one.
    assert post("203.0.113.8").status_code == 400
    assert [post(f"2001:db8:1:2::{n}").status_code for n in range(1, 8)] == [400] * 5 + [429] * 2
    assert RateBucket.objects.filter(key="client:esp-webhook:2001:db8:1:2::/64").exists()


def test_behind_a_proxy_the_configured_header_names_the_client(settings):
    settings.ESP_WEBHOOK_RATE_LIMIT = "2/min"
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    client = Client(raise_request_exception=False)

    def post(real_ip):
        return client.post(
            "/emails/anymail/postmark/tracking/",
            json.dumps({}),
            content_type="application/json",
            REMOTE_ADDR="10.0.0.1",  # the proxy, the same for everyone
            HTTP_X_REAL_IP=real_ip,
        ).status_code

    assert [post("198.51.100.1") for _ in range(3)] == [400, 400, 429]
    assert post("198.51.100.2") == 400
