"""Sign-in throttling per client address whatever the username, and per username from any
address (config/signin.py): lockouts that double, refused before any password is hashed,
the same 429 page in English and German, the address taken from the configured proxy
header."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from django.urls import reverse
from django.utils import timezone

from cards.models import SignInThrottle

pytestmark = pytest.mark.django_db

ADDRESS_LOCKED = "Too many failed sign-in attempts from your network"
ACCOUNT_LOCKED = "Too many failed sign-in attempts for this account"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 6
    settings.LOGIN_USERNAME_FAILURE_LIMIT = 4
    settings.LOGIN_LOCKOUT_MINUTES = 5
    settings.LOGIN_LOCKOUT_MAX_MINUTES = 60
    settings.AXES_FAILURE_LIMIT = 100  # the pair's own limit out of the way here
    return settings


@pytest.fixture
def hashes(monkeypatch):
    """How many passwords were hashed (checked or made)."""
    count = {"n": 0}
    original = MD5PasswordHasher.encode

    def counting(self, password, salt):
        count["n"] += 1
        return original(self, password, salt)

    monkeypatch.setattr(MD5PasswordHasher, "encode", counting)
    return count


def sign_in(client, username, password="wrong", address="203.0.113.9", **extra):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address, **extra
    )


def test_one_address_trying_many_usernames_is_locked_out(client, owner, hashes):
    answers = [sign_in(client, f"random{n}").status_code for n in range(6)]
    assert answers == [200] * 6
    hashed = hashes["n"]

    response = sign_in(client, "owner", "pw-owner")

    assert response.status_code == 429
    assert ADDRESS_LOCKED in response.text
    assert "blocked for 5 minutes" in response.text
    assert hashes["n"] == hashed  # refused before any hashing
    # Another address is not affected.
    assert sign_in(client, "owner", "pw-owner", address="203.0.113.10").status_code == 302


def test_one_username_tried_from_many_addresses_is_locked_out(client, owner):
    for n in range(4):
        assert sign_in(client, "owner", address=f"198.51.100.{n}").status_code == 200

    response = sign_in(client, "owner", "pw-owner", address="198.51.100.200")

    assert response.status_code == 429
    assert ACCOUNT_LOCKED in response.text
    # Usernames are counted case-insensitively; other users sign in.
    assert sign_in(client, "OWNER", "pw-owner", address="198.51.100.201").status_code == 429
    get_user_model().objects.create_user("other", password="pw-other")
    assert sign_in(client, "other", "pw-other", address="198.51.100.202").status_code == 302


def test_lockouts_double_and_are_forgotten_after_a_quiet_day(client, owner):
    start = timezone.now()
    lengths = []
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(4):
            for n in range(4):
                sign_in(client, "owner", address=f"192.0.2.{n}")
            row = SignInThrottle.objects.get(key="username:owner")
            lengths.append(round((row.locked_until - timezone.now()).total_seconds() / 60))
            clock.move_to(row.locked_until + timedelta(seconds=1))
        assert lengths == [5, 10, 20, 40]
        # Failures while locked out do not extend the lockout.
        for n in range(4):
            sign_in(client, "owner", address=f"192.0.2.{n}")
        row = SignInThrottle.objects.get(key="username:owner")
        assert round((row.locked_until - timezone.now()).total_seconds() / 60) == 60  # capped
        until = row.locked_until
        sign_in(client, "owner")
        assert SignInThrottle.objects.get(key="username:owner").locked_until == until
        # Right after the longest lockout, the next one is as long (not the first again).
        clock.move_to(until + timedelta(minutes=1))
        for n in range(4):
            sign_in(client, "owner", address=f"192.0.2.{n}")
        row = SignInThrottle.objects.get(key="username:owner")
        assert round((row.locked_until - timezone.now()).total_seconds() / 60) == 60
        until = row.locked_until
        # A day without failures after a lockout: back to the first, shortest one.
        clock.move_to(until + timedelta(days=1, minutes=1))
        for n in range(4):
            sign_in(client, "owner", address=f"192.0.2.{n}")
        row = SignInThrottle.objects.get(key="username:owner")
        assert (row.lockouts, round((row.locked_until - timezone.now()).total_seconds() / 60)) == (
            1,
            5,
        )


def test_a_success_clears_the_usernames_count_not_the_addresss(client, owner):
    for _ in range(3):
        sign_in(client, "owner")
    assert sign_in(client, "owner", "pw-owner").status_code == 302
    client.logout()
    assert SignInThrottle.objects.get(key="username:owner").failures == 0
    assert SignInThrottle.objects.get(key="address:203.0.113.9").failures == 3


def test_the_lockout_page_in_german(client, owner):
    for n in range(6):
        sign_in(client, f"random{n}")

    response = sign_in(client, "owner", "pw-owner", HTTP_ACCEPT_LANGUAGE="de")

    assert response.status_code == 429
    assert response["Content-Language"] == "de"
    assert "Zu viele fehlgeschlagene Anmeldeversuche aus Ihrem Netzwerk" in response.text
    assert "Anmelden" in response.text


def test_the_admin_sign_in_is_refused_before_hashing_too(client, owner, hashes):
    for n in range(6):
        sign_in(client, f"random{n}")
    hashed = hashes["n"]

    response = client.post(
        reverse("admin:login"),
        {"username": "owner", "password": "pw-owner"},
        REMOTE_ADDR="203.0.113.9",
    )

    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert hashes["n"] == hashed


def test_behind_a_proxy_the_configured_header_is_the_address(client, owner, settings):
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    for n in range(6):
        sign_in(client, f"random{n}", address="10.0.0.1", HTTP_X_REAL_IP="203.0.113.50")

    # Same proxy, another client: free; the guessing client: locked out.
    ok = sign_in(client, "owner", "pw-owner", address="10.0.0.1", HTTP_X_REAL_IP="203.0.113.51")
    assert ok.status_code == 302
    client.logout()
    locked = sign_in(client, "owner", "pw-owner", address="10.0.0.1", HTTP_X_REAL_IP="203.0.113.50")
    assert locked.status_code == 429


def test_an_operator_unlocks_a_username_or_an_address(client, owner):
    from io import StringIO

    from django.core.management import call_command

    for n in range(6):
        sign_in(client, f"random{n}")
    for n in range(4):
        sign_in(client, "owner", address=f"198.51.100.{n}")
    out = StringIO()
    call_command("unlock_sign_in", "--list", stdout=out)
    assert "username:owner: 0 failure(s), 1 lockout(s), locked until" in out.getvalue()
    assert "address:203.0.113.9: 0 failure(s), 1 lockout(s)" in out.getvalue()

    call_command("unlock_sign_in", "OWNER", "203.0.113.9", stdout=out)

    assert "Unlocked 2 of 2" in out.getvalue()
    assert sign_in(client, "owner", "pw-owner").status_code == 302


def test_a_forwarded_list_counts_its_last_address_the_one_the_proxy_wrote(client, owner, settings):
    # X-Forwarded-For behind nginx's $proxy_add_x_forwarded_for: "<what the client
    # sent>, <the client's real address>". A new made-up first entry each time must not
    # make a new client.
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    for n in range(6):
        sign_in(
            client,
            f"random{n}",
            address="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.50",
        )
    locked = sign_in(
        client,
        "owner",
        "pw-owner",
        address="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.7, 203.0.113.50",
    )
    assert locked.status_code == 429
