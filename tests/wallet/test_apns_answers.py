"""What a wallet batch does with APNs' answers, through the real engine and the loopback
HTTP/2 APNs server: which answers remove a registration, which keep it, and which pause
the job because every push would fail alike."""

import pytest

from bulkjobs.models import Status
from tests.conftest import make_cards
from tests.wallet.test_wallet_jobs import items, register_device, run
from wallet.models import ApnsProviderToken, AppleDeviceRegistration, BulkWalletApiJob
from wallet.services import create_wallet_job

TOKEN = "b" * 64


def sync_change(company, card, title):
    """Change the card (so its pass has something new), sync it, return the item."""
    card.job_title = title
    card.save()
    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    return item


def test_bad_device_token_from_the_sandbox_keeps_the_registration(apns_server, company, card):
    # The loopback server is not api.push.apple.com, so it counts as the sandbox.
    register_device(card, TOKEN)
    for title in ("CTO", "CEO"):
        apns_server.reply(TOKEN, (400, "BadDeviceToken"))
        item = sync_change(company, card, title)
        assert item.status == Status.COMPLETED
        assert AppleDeviceRegistration.objects.filter(push_token=TOKEN).exists()
    # The item says what it means and what to check, in its reason and its detail.
    for text in (item.reason, item.apple_detail):
        assert "BadDeviceToken" in text
        assert "production environment" in text
        assert "APNS_BASE_URL" in text
    assert AppleDeviceRegistration.objects.get().refused_push_token == ""


def test_the_sandbox_host_counts_as_sandbox_and_a_relay_can_say_production(settings):
    from wallet.apple import apns_conf

    settings.APNS_ENVIRONMENT = "auto"
    settings.APNS_BASE_URL = "https://api.sandbox.push.apple.com"
    assert apns_conf.environment() == apns_conf.SANDBOX
    settings.APNS_BASE_URL = "https://api.push.apple.com:443"
    assert apns_conf.environment() == apns_conf.PRODUCTION
    settings.APNS_BASE_URL = "https://apns-relay.example.com"
    assert apns_conf.environment() == apns_conf.SANDBOX
    settings.APNS_ENVIRONMENT = "production"
    assert apns_conf.environment() == apns_conf.PRODUCTION


def test_bad_device_token_from_production_removes_only_when_repeated(
    apns_server, company, card, settings
):
    settings.APNS_ENVIRONMENT = "production"  # the loopback server plays api.push.apple.com
    register_device(card, TOKEN)
    apns_server.reply(TOKEN, (400, "BadDeviceToken"))
    item = sync_change(company, card, "CTO")
    assert item.status == Status.COMPLETED
    assert "removed if refused again" in item.apple_detail
    registration = AppleDeviceRegistration.objects.get()
    assert registration.refused_push_token == TOKEN and registration.refused_at is not None

    apns_server.reply(TOKEN, (400, "BadDeviceToken"))
    item = sync_change(company, card, "CEO")
    assert "1 unregistered device(s) removed" in item.apple_detail
    assert not AppleDeviceRegistration.objects.exists()


def test_a_good_answer_or_a_new_token_clears_the_first_refusal(
    apns_server, company, card, settings
):
    settings.APNS_ENVIRONMENT = "production"
    register_device(card, TOKEN)
    apns_server.reply(TOKEN, (400, "BadDeviceToken"))
    sync_change(company, card, "CTO")
    sync_change(company, card, "CEO")  # 200: the token works after all
    assert AppleDeviceRegistration.objects.get().refused_push_token == ""

    apns_server.reply(TOKEN, (400, "BadDeviceToken"))
    sync_change(company, card, "CFO")
    # The device registers again with a new token: one refusal of it is not two.
    new_token = "c" * 64
    AppleDeviceRegistration.objects.update(push_token=new_token)
    apns_server.reply(new_token, (400, "BadDeviceToken"))
    sync_change(company, card, "COO")
    assert AppleDeviceRegistration.objects.get().refused_push_token == new_token


def test_unregistered_removes_at_once(apns_server, company, card):
    register_device(card, TOKEN)
    apns_server.reply(TOKEN, (410, "Unregistered"))
    item = sync_change(company, card, "CTO")
    assert item.status == Status.COMPLETED
    assert not AppleDeviceRegistration.objects.exists()


@pytest.mark.parametrize(
    "status,reason,setting",
    [
        (403, "InvalidProviderToken", "APNS_KEY_ID"),
        (403, "BadCertificate", "APPLE_PASS_CERT"),
        (400, "BadTopic", "APPLE_PASS_TYPE_ID"),
    ],
)
def test_a_provider_wide_refusal_pauses_the_job_and_spends_nothing(
    apns_server, company, status, reason, setting
):
    cards = make_cards(company, 3)
    for n, card in enumerate(cards):
        register_device(card, f"{n:064x}")
        card.job_title = "Changed"
        card.save()
        apns_server.reply(f"{n:064x}", (status, reason))
    job = create_wallet_job(company, cards=cards)
    summary = run()

    assert summary.paused and reason in summary.paused[0]
    job.refresh_from_db()
    assert job.status == Status.PROCESSING and job.paused_at is not None
    assert reason in job.reason and setting in job.reason
    # The first push told the batch; no card spent an attempt or failed, no token minted.
    assert len(apns_server.requests) == 1
    assert [(i.status, i.attempts) for i in items(job)] == [(Status.PENDING, 0)] * 3
    assert ApnsProviderToken.objects.count() == 1
    assert AppleDeviceRegistration.objects.count() == 3

    # Fixed (the server accepts again): the next run completes the job.
    apns_server.scripted.clear()
    run()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.paused_at is None
    assert BulkWalletApiJob.objects.get().succeeded_items == 3


def test_an_rsa_apns_key_pauses_the_job_saying_so(apns_server, company, card, tmp_path, apple):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from wallet.apple.devcerts import key_pem

    path = tmp_path / "AuthKey_RSA.p8"
    path.write_bytes(key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    apple.APNS_KEY_FILE = str(path)
    register_device(card, TOKEN)
    card.job_title = "CTO"
    card.save()
    job = create_wallet_job(company, cards=[card])
    run()
    job.refresh_from_db()
    assert job.paused_at is not None
    assert "APNS_KEY_FILE" in job.reason and "RSA" in job.reason
    assert apns_server.requests == []
