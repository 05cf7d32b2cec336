"""Per-platform pauses: a platform refusing this installation's credentials or permissions
pauses that platform only, spends no attempt, and the other platform's updates go out in
the same run; once the setting is fixed, the waiting work resumes by itself.

Real loopback servers on both sides (tests/wallet/apns_server.py, google_server.py)."""

import pytest
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from bulkjobs.reasons import cause, of, pause_cause
from tests.conftest import make_cards
from tests.wallet.apns_server import FakeApns
from tests.wallet.conftest import issue_first_pass
from wallet.apple import apns
from wallet.apple.devcerts import make_chain, write_chain
from wallet.batch import PLATFORM_RECHECK_SECONDS
from wallet.models import (
    AppleDeviceRegistration,
    BulkWalletApiJobItem,
    CardWalletState,
    PlatformResult,
)
from wallet.services import create_wallet_job


def run():
    return run_once(get_kind("wallet"))


def items(job):
    return list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id"))


def cards_on_iphones(company, count=3):
    """Cards whose passes are on a device each and changed since: a sync pushes each."""
    cards = make_cards(company, count)
    for number, card in enumerate(cards):
        state = CardWalletState.objects.for_card(card)
        issue_first_pass(state)
        AppleDeviceRegistration.objects.create(
            device_library_id=f"device-{number}", push_token=f"token-{number}", state=state
        )
        card.job_title = "Chief Engineer"
        card.save()
    return cards


def time_passes(job):
    """The waiting items' recheck time comes (as PLATFORM_RECHECK_SECONDS later)."""
    waiting = BulkWalletApiJobItem.objects.filter(job=job, status=Status.PENDING)
    assert waiting.exists()
    # The recheck is PLATFORM_RECHECK_SECONDS after the batch (a few seconds of slack).
    recheck = timezone.now() + timezone.timedelta(seconds=PLATFORM_RECHECK_SECONDS - 10)
    assert all(item.next_attempt_at > recheck for item in waiting), (
        "a waiting item is due again before its recheck"
    )
    waiting.update(next_attempt_at=timezone.now())


def refuse_google(google, status, message, times=50):
    for method in ("PATCH", "POST"):
        for resource in ("genericClass", "genericObject"):
            google.fail_next(method, resource, status, message, times=times)


@pytest.mark.parametrize(
    ("status", "message", "hint"),
    [
        (403, "The caller does not have permission", "Google Pay & Wallet Console"),
        (401, "Request had invalid authentication credentials.", "also with a new token"),
    ],
)
def test_google_refusal_pauses_google_only_and_resumes_once_fixed(
    apns_server, google, company, status, message, hint
):
    cards = cards_on_iphones(company)
    refuse_google(google, status, message)
    job = create_wallet_job(company)

    summary = run()

    # Apple's pushes went out for every card in this very run.
    assert sorted(r.token for r in apns_server.requests) == ["token-0", "token-1", "token-2"]
    # Google was asked once (a 401 three times: google-auth fetches a new token and
    # sends the request again, twice), then left alone for the rest of the batch.
    assert len(google.requests) == (1 if status == 403 else 3)
    job.refresh_from_db()
    assert job.status == Status.PROCESSING and job.paused_at is not None
    assert cause(of(job)).code == ("google_permission_denied", "google_unauthorized")[status == 401]
    assert hint in job.reason
    assert summary.paused and hint in summary.paused[0]
    for item in items(job):
        assert item.status == Status.PENDING
        assert item.attempts == 0  # no attempt spent
        assert (item.apple_result, item.google_result) == ("synced", "paused")
        assert hint in item.google_detail
        assert item.get_google_result_display() == "Paused (waiting for a settings fix)"

    # Still refused in the next run: the pause continues, still no attempt spent, and
    # the devices are not told again (their pass did not change).
    time_passes(job)
    run()
    assert len(apns_server.requests) == 3
    assert {i.attempts for i in items(job)} == {0}

    # An operator fixes the setting: the next recheck syncs Google and ends the pause.
    google._script.clear()
    time_passes(job)
    run()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.paused_at is None
    for item in items(job):
        assert item.status == Status.COMPLETED
        # What Apple did while Google waited still shows.
        assert (item.apple_result, item.google_result) == ("synced", "synced")
    assert len(google.objects) == len(cards)
    assert len(apns_server.requests) == 3


def test_google_refusal_in_german_names_the_fix(apns_server, google, company):
    from django.utils import translation

    cards_on_iphones(company, 1)
    refuse_google(google, 403, "The caller does not have permission")
    job = create_wallet_job(company)
    run()
    job.refresh_from_db()
    with translation.override("de"):
        words = pause_cause(job, for_staff=True)
        user_words = pause_cause(job)
    assert "Google Pay & Wallet Console" in words and "Dienstkonto" in words
    assert "GOOGLE_WALLET" not in user_words and "Google" in user_words


@pytest.mark.parametrize("reason", ["InvalidProviderToken", "ExpiredProviderToken"])
def test_apns_refusal_pauses_apple_only(apns_server, google, company, reason):
    cards = cards_on_iphones(company)
    for number in range(3):
        apns_server.reply(f"token-{number}", *[(403, reason)] * 3)
    job = create_wallet_job(company)

    run()

    # Google got every card in the same run.
    assert len(google.objects) == len(cards)
    # APNs was tried for the first card only (its push, and one with a new token).
    assert {r.token for r in apns_server.requests} == {"token-0"}
    job.refresh_from_db()
    assert job.paused_at is not None and "APNs refused the push" in job.reason
    for item in items(job):
        assert item.status == Status.PENDING and item.attempts == 0
        assert (item.apple_result, item.google_result) == ("paused", "synced")

    apns_server.scripted.clear()
    time_passes(job)
    run()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.paused_at is None
    assert [(i.apple_result, i.google_result) for i in items(job)] == [("synced", "synced")] * 3
    assert {r.token for r in apns_server.requests} == {"token-0", "token-1", "token-2"}


def test_refused_pass_certificate_pauses_apple_with_the_hint(
    apple, chain_files, google, company, tmp_path
):
    """Certificate auth (no APNS_KEY_FILE): APNs refuses a pass certificate that Apple did
    not issue with a TLS alert, which must not pass for a network blip."""
    other = write_chain(make_chain("OTHERTEAM1", "pass.com.example.other"), tmp_path)
    apple.APNS_KEY_FILE = ""
    with FakeApns(
        str(chain_files["server_cert"]),
        str(chain_files["server_key"]),
        client_ca=str(other["root"]),
    ) as server:
        apple.APNS_BASE_URL = server.url
        try:
            cards = cards_on_iphones(company, 2)
            job = create_wallet_job(company)
            run()
        finally:
            apns.close_shared_client()
    assert server.requests == []
    assert len(google.objects) == len(cards)
    job.refresh_from_db()
    assert job.paused_at is not None
    assert "APNs refused the pass certificate" in job.reason
    assert "APPLE_PASS_CERT" in job.reason
    for item in items(job):
        assert item.attempts == 0 and item.apple_result == PlatformResult.PAUSED
        assert "APPLE_PASS_CERT" in item.apple_detail


def test_both_platforms_refused_pause_the_whole_batch(apns_server, google, company):
    """Nothing can be done for any card: the batch stops at the first, given back."""
    cards_on_iphones(company)
    refuse_google(google, 403, "The caller does not have permission")
    for number in range(3):
        apns_server.reply(f"token-{number}", *[(403, "InvalidProviderToken")] * 3)
    job = create_wallet_job(company)
    run()
    assert {r.token for r in apns_server.requests} == {"token-0"}
    assert len(google.requests) == 1
    job.refresh_from_db()
    assert job.paused_at is not None
    assert [(i.status, i.attempts) for i in items(job)] == [(Status.PENDING, 0)] * 3


def test_waiting_items_do_not_starve_cards_not_yet_tried(apns_server, google, company, settings):
    """Batches of 2: the items given back to wait for Google come after the cards not
    tried yet, so every card's Apple update goes out before any waiting one is redone."""
    settings.BULKJOBS = {**settings.BULKJOBS, "WALLET_BATCH_SIZE": 2}
    cards_on_iphones(company, 5)
    refuse_google(google, 403, "The caller does not have permission", times=500)
    job = create_wallet_job(company)
    for _ in range(3):  # a paused job gets one batch per run
        run()
        # The waiting ones are due again at once, as if their recheck time had come.
        BulkWalletApiJobItem.objects.filter(job=job, next_attempt_at__isnull=False).update(
            next_attempt_at=timezone.now()
        )
    assert sorted(r.token for r in apns_server.requests) == [f"token-{n}" for n in range(5)]


def test_a_platform_paused_longer_than_the_limit_fails_the_job(
    apns_server, google, company, settings, database_time
):
    """The engine's pause limit holds for a platform's pause too: after
    BULKJOBS_PAUSE_LIMIT_HOURS the job fails, naming the refusal, and raises its alert."""
    from datetime import timedelta

    settings.BULKJOBS = {**settings.BULKJOBS, "RUN_GAP_SECONDS": 2 * 3600}
    cards_on_iphones(company, 2)
    refuse_google(google, 403, "The caller does not have permission", times=500)
    job = create_wallet_job(company)
    for _hour in range(24):
        run()
        database_time.shift(timedelta(hours=1))
    job.refresh_from_db()
    assert job.status == Status.PROCESSING and job.paused_at is not None
    summary = run()
    assert summary.jobs_expired == 1
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.reason.startswith("Failed: paused for more than 24 hours: Google Wallet denied")
    # Apple's pushes went out once, in the first hour, never again.
    assert sorted(r.token for r in apns_server.requests) == ["token-0", "token-1"]
    assert {i.status for i in items(job)} == {Status.FAILED}


def test_each_platforms_state_for_the_job_page(apns_server, google, company):
    from django.utils import translation

    cards_on_iphones(company, 1)
    refuse_google(google, 403, "The caller does not have permission")
    job = create_wallet_job(company)
    run()
    (item,) = items(job)
    with translation.override("de"):
        apple_state, google_state = item.platform_states()
        staff_google = item.platform_states(for_staff=True)[1]
    assert (apple_state["label"], apple_state["result_label"]) == ("Apple Wallet", "Abgeglichen")
    assert google_state["paused"] and google_state["result_label"].startswith("Pausiert")
    assert google_state["detail"].startswith("Google Wallet hat den Zugang dieser Plattform")
    assert "GOOGLE_WALLET" not in google_state["detail"]
    assert "Google Pay & Wallet Console" in staff_google["detail"]
