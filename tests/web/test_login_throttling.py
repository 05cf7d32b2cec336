"""Sign-in throttling (django-axes, configured in config/settings.py and config/auth.py)."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

LOCKED_OUT = "Too many failed sign-in attempts for this account"


@pytest.fixture
def sign_in(client):
    def attempt(password, username="owner", address="127.0.0.1"):
        return client.post(
            reverse("login"),
            {"username": username, "password": password},
            REMOTE_ADDR=address,
        )

    return attempt


def signed_in(client):
    return client.get(reverse("bulkjobs:dashboard")).status_code == 200


def fail(sign_in, times, **where):
    for _ in range(times):
        response = sign_in("wrong", **where)
        assert response.status_code == 200
        assert "did not match" in response.text


def lock_out(sign_in, settings):
    """Wrong passwords up to the limit: the last one already gets the lockout page."""
    fail(sign_in, settings.AXES_FAILURE_LIMIT - 1)
    response = sign_in("wrong")
    assert response.status_code == 429
    assert LOCKED_OUT in response.text


def test_the_right_password_is_refused_after_the_failure_limit(client, sign_in, owner, settings):
    lock_out(sign_in, settings)

    response = sign_in("pw-owner")

    assert response.status_code == 429
    assert LOCKED_OUT in response.text
    assert "blocked for 15 minutes" in response.text
    # The page is still the sign-in form, with the username kept.
    assert 'name="password"' in response.text
    assert 'value="owner"' in response.text
    assert not signed_in(client)


def test_sign_in_works_again_after_the_cool_off(client, sign_in, owner, settings):
    lock_out(sign_in, settings)
    assert sign_in("pw-owner").status_code == 429

    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        response = sign_in("pw-owner")

        assert response.status_code == 302
        assert response["Location"] == reverse("bulkjobs:dashboard")
        assert signed_in(client)


def test_a_success_before_the_limit_starts_the_count_again(client, sign_in, owner, settings):
    fail(sign_in, settings.AXES_FAILURE_LIMIT - 1)
    assert sign_in("pw-owner").status_code == 302
    client.post(reverse("logout"))

    fail(sign_in, settings.AXES_FAILURE_LIMIT - 1)

    assert sign_in("pw-owner").status_code == 302


def test_the_lockout_is_per_username_and_address(client, sign_in, owner, member, settings):
    lock_out(sign_in, settings)

    # The same user from another address, and another user from the same address, can sign in.
    assert sign_in("pw-owner", address="192.0.2.7").status_code == 302
    client.post(reverse("logout"))
    assert sign_in("pw-member", username="member").status_code == 302
