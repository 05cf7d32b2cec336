"""Wallet jobs with both platforms configured: loopback APNs (HTTP/2) and loopback Google."""

import pytest

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from tests.conftest import make_cards
from tests.wallet.conftest import issue_first_pass
from wallet.google.payload import object_id_for
from wallet.models import (
    AppleDeviceRegistration,
    BulkWalletApiJobItem,
    CardWalletState,
    PlatformResult,
)
from wallet.services import create_wallet_job, platform_status


def run():
    return run_once(get_kind("wallet"))


def items(job):
    return list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id"))


def test_both_platforms_synced_then_unchanged(apns_server, google, company):
    cards = make_cards(company, 3)
    state = CardWalletState.objects.for_card(cards[0])
    issue_first_pass(state)
    AppleDeviceRegistration.objects.create(device_library_id="d", push_token="t1", state=state)
    assert all(entry["configured"] for entry in platform_status().values())

    job = create_wallet_job(company)
    run()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    for item in items(job):
        assert item.status == Status.COMPLETED
        assert item.google_result == PlatformResult.SYNCED
        assert item.reason == "Apple Wallet " + item.get_apple_result_display().lower() + (
            "; Google Wallet synced."
        )
    # Ada's first pass was issued by a download; its content has not changed since.
    assert [i.apple_result for i in items(job)] == [
        PlatformResult.UNCHANGED, PlatformResult.SYNCED, PlatformResult.SYNCED,
    ]  # fmt: skip
    assert apns_server.requests == []
    states = CardWalletState.objects.order_by("card_id")
    assert [s.google_object_id for s in states] == [object_id_for(c) for c in cards]
    assert all(s.google_content_hash for s in states)

    job = create_wallet_job(company)
    run()
    assert {(i.apple_result, i.google_result) for i in items(job)} == {
        (PlatformResult.UNCHANGED, PlatformResult.UNCHANGED)
    }

    cards[0].job_title = "Chief Engineer"
    cards[0].save()
    job = create_wallet_job(company, cards=[cards[0]])
    run()
    (item,) = items(job)
    assert (item.apple_result, item.google_result) == (PlatformResult.SYNCED,) * 2
    assert [r.token for r in apns_server.requests] == ["t1"]


def test_google_transient_error_retries_the_card(apns_server, google, company, card):
    google.fail_next("POST", "genericClass", 503, times=10)
    google.fail_next("PATCH", "genericClass", 503, times=10)
    google.fail_next("PATCH", "genericObject", 503, times=10)
    google.fail_next("POST", "genericObject", 503, times=10)
    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    assert item.status == Status.PENDING
    assert item.attempts == 1 and item.next_attempt_at is not None
    assert item.google_result == PlatformResult.FAILED
    assert item.apple_result == PlatformResult.SYNCED
    assert item.reason == "Google Wallet patch genericClass: HTTP 503: Scripted 503"


def test_broken_google_key_pauses_the_job(apns_server, google, settings, company, card):
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = "/nonexistent/key.json"
    job = create_wallet_job(company, cards=[card])
    summary = run()
    assert summary.paused and "Google Wallet unavailable" in summary.paused[0]
    (item,) = items(job)
    assert item.status == Status.PENDING and item.attempts == 0


def test_google_permanent_error_fails_the_card(apns_server, google, company, card):
    # A 403 is a refusal of the whole issuer and pauses Google (test_platform_pauses.py);
    # a 400 is this card's own data.
    google.fail_next("PATCH", "genericObject", 400, "Invalid value", times=5)
    google.fail_next("POST", "genericObject", 400, "Invalid value", times=5)
    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    assert item.status == Status.FAILED
    assert item.google_result == PlatformResult.FAILED
    assert "Invalid value" in item.reason
    # The Apple half still happened and says so.
    assert item.apple_result == PlatformResult.SYNCED


def test_card_page_shows_both_buttons_once_the_card_is_synced(client, apple, google, card):
    page = client.get(card.get_absolute_url()).content.decode()
    assert "Add to Apple Wallet" in page
    # No Google object exists yet, and a save link to a missing object would fail.
    assert "https://pay.google.com/gp/v/save/" not in page
    create_wallet_job(card.company, cards=[card])
    run()
    page = client.get(card.get_absolute_url()).content.decode()
    assert "https://pay.google.com/gp/v/save/" in page


@pytest.mark.django_db(transaction=True)
def test_cancel_during_a_batch_stops_it(google, company):
    from bulkjobs.ops.services import cancel_job
    from wallet.models import BulkWalletApiJob

    make_cards(company, 10)
    job = create_wallet_job(company)
    cards_seen = []

    def cancel_at_the_third_card(method, path):
        object_id = path.partition("/")[2]
        if path.startswith("genericObject/") and object_id not in cards_seen:
            cards_seen.append(object_id)
            if len(cards_seen) == 3:  # an operator cancels while the batch runs
                cancel_job(BulkWalletApiJob.objects.get(pk=job.pk))

    google.on_api_call = cancel_at_the_third_card
    run()
    assert len(cards_seen) == 3
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    # The item in flight when the cancel landed is cancelled too; its result is not recorded.
    assert [item.status for item in items(job)] == [Status.COMPLETED] * 2 + [Status.CANCELLED] * 8
