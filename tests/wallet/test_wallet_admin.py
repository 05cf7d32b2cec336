"""The wallet models in the Django admin: pages render, secrets and pass bytes stay out."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from tests.conftest import make_cards
from wallet.models import AppleDeviceRegistration, BulkWalletApiJobItem, CardWalletState
from wallet.services import create_wallet_job


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_wallet_admin_pages(admin_client, apple, company):
    make_cards(company, 3)
    job = create_wallet_job(company)
    run_once(get_kind("wallet"))
    state = CardWalletState.objects.first()
    AppleDeviceRegistration.objects.create(
        device_library_id="device-1", push_token="secret-push-token", state=state
    )
    item = BulkWalletApiJobItem.objects.first()
    pages = [
        reverse("admin:wallet_bulkwalletapijob_changelist"),
        reverse("admin:wallet_bulkwalletapijob_change", args=[job.pk]),
        reverse("admin:wallet_bulkwalletapijobitem_changelist") + "?apple_result=synced",
        reverse("admin:wallet_bulkwalletapijobitem_change", args=[item.pk]),
        reverse("admin:wallet_cardwalletstate_changelist"),
        reverse("admin:wallet_cardwalletstate_change", args=[state.pk]),
        reverse("admin:wallet_appledeviceregistration_changelist"),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert state.apple_auth_token not in response.content.decode(), url
    changelist = admin_client.get(pages[2]).content.decode()
    assert "Synced" in changelist
    state_page = admin_client.get(pages[5]).content.decode()
    assert state.apple_serial_number in state_page
    assert "device-1" in state_page
