"""PassKit device registration is limited per client address (APPLE_REGISTRATION_RATE_LIMIT):
register/unregister churn and token guessing alike get 429 beyond it, other clients not."""

import pytest

from tests.wallet.test_apple_web_service import auth, register_url
from wallet.models import AppleDeviceRegistration

pytestmark = pytest.mark.django_db


def test_registration_churn_is_limited_per_address(client, issued, settings):
    settings.APPLE_REGISTRATION_RATE_LIMIT = "4/min"

    def churn(method, address, token=None):
        kwargs = {"content_type": "application/json", "REMOTE_ADDR": address}
        kwargs.update(auth(token or issued))
        if method == "post":
            return client.post(register_url(issued), {"pushToken": "ab" * 32}, **kwargs)
        return client.delete(register_url(issued), **kwargs)

    answers = [
        churn(method, "198.51.100.4").status_code
        for method in ("post", "delete", "post", "delete", "post", "delete")
    ]
    assert answers == [201, 200, 201, 200, 429, 429]
    assert not AppleDeviceRegistration.objects.exists()
    # Guessing tokens counts too, before any lookup.
    assert churn("post", "198.51.100.5", token="guess").status_code == 401
    assert [churn("post", "198.51.100.5", token="guess").status_code for _ in range(4)] == [
        401,
        401,
        401,
        429,
    ]
    # Another device's address still registers.
    assert churn("post", "198.51.100.6").status_code == 201
