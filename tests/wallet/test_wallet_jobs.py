"""Wallet jobs through the real engine: batches, outcomes per platform, redo, cancel."""

import secrets
from datetime import timedelta

import pytest
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from bulkjobs.ops.services import cancel_job
from cards.models import BusinessCard
from tests.conftest import DatabaseTime, make_cards
from tests.wallet.conftest import issue_first_pass, unzip
from wallet.models import (
    AppleDeviceRegistration,
    BulkWalletApiJob,
    BulkWalletApiJobItem,
    CardWalletState,
    PlatformResult,
)
from wallet.services import create_wallet_job


def kind():
    return get_kind("wallet")


def run(**options):
    return run_once(kind(), **options)


def register_device(card, token, device="device-1"):
    state = CardWalletState.objects.for_card(card)
    if not state.apple_pass_data:
        issue_first_pass(state)
    return AppleDeviceRegistration.objects.create(
        device_library_id=device, push_token=token, state=state
    )


def items(job):
    return list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id"))


def test_kind_is_registered_and_idempotent():
    assert kind().job_model._meta.db_table == "bulk_wallet_api_jobs"
    assert kind().item_model._meta.db_table == "bulk_wallet_api_job_items"
    assert kind().interrupted_policy == "redo"
    assert kind().default_batch_size == 10


def test_batch_of_ten_per_run(apns_server, company):
    make_cards(company, 25)
    job = create_wallet_job(company)
    assert job.total_items == 25
    summary = run()
    assert summary.items_succeeded == 10
    job.refresh_from_db()
    assert job.status == Status.PROCESSING and job.succeeded_items == 10
    # The company's pace (10 a minute) lets the next minutes' runs do the rest.
    for _minute in (1, 2):
        DatabaseTime().shift(timedelta(minutes=1))
        run()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert job.succeeded_items == 25
    for item in items(job):
        assert item.status == Status.COMPLETED
        assert item.apple_result == PlatformResult.SYNCED
        assert item.google_result == PlatformResult.SKIPPED
        assert "GOOGLE_WALLET_ISSUER_ID" in item.google_detail
    # Every card now has a stored, signed pass.
    assert CardWalletState.objects.filter(apple_pass_data__isnull=False).count() == 25


def test_changed_card_is_pushed_unchanged_card_is_not(apns_server, company, card):
    register_device(card, "a" * 64)
    register_device(card, "b" * 64, device="device-2")
    state = CardWalletState.objects.get(card=card)
    first_tag, first_data = state.apple_update_tag, bytes(state.apple_pass_data)

    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    assert item.apple_result == PlatformResult.UNCHANGED
    assert apns_server.requests == []

    card.job_title = "Countess of Lovelace"
    card.save()
    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    assert item.status == Status.COMPLETED
    assert item.apple_result == PlatformResult.SYNCED
    assert "2 device(s) notified" in item.apple_detail
    assert sorted(r.token for r in apns_server.requests) == ["a" * 64, "b" * 64]
    state.refresh_from_db()
    assert state.apple_update_tag > first_tag
    assert bytes(state.apple_pass_data) != first_data
    assert b"Countess of Lovelace" in unzip(state.apple_pass_data)["pass.json"]


def test_unregistered_device_is_removed(apns_server, company, card):
    register_device(card, "dead")
    register_device(card, "alive", device="device-2")
    card.job_title = "CTO"
    card.save()
    apns_server.reply("dead", (410, "Unregistered"))
    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    assert item.status == Status.COMPLETED
    assert "1 unregistered device(s) removed" in item.apple_detail
    assert list(AppleDeviceRegistration.objects.values_list("push_token", flat=True)) == ["alive"]


def test_throttled_push_is_retried_and_pushed_again(apns_server, company, card):
    register_device(card, "a" * 64)
    card.job_title = "CTO"
    card.save()
    apns_server.reply("a" * 64, (429, "TooManyRequests"))
    job = create_wallet_job(company, cards=[card])
    run()
    (item,) = items(job)
    assert item.status == Status.PENDING
    assert item.next_attempt_at > timezone.now()
    assert "TooManyRequests" in item.reason
    assert item.apple_result == PlatformResult.FAILED
    # The pass is already stored for devices, but the push must still happen: the hash
    # is only recorded once every device was told.
    BulkWalletApiJobItem.objects.filter(pk=item.pk).update(next_attempt_at=None)
    run()
    (item,) = items(job)
    assert item.status == Status.COMPLETED
    assert item.apple_result == PlatformResult.SYNCED
    assert [r.token for r in apns_server.requests] == ["a" * 64, "a" * 64]


def test_permanent_push_error_fails_the_item_not_the_batch(apns_server, company):
    cards = make_cards(company, 3)
    for n, c in enumerate(cards):
        register_device(c, f"token-{n}")
        c.job_title = "Changed"
        c.save()
    apns_server.reply("token-1", (413, "PayloadTooLarge"))
    job = create_wallet_job(company, cards=cards)
    run()
    statuses = [item.status for item in items(job)]
    assert statuses == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    assert "PayloadTooLarge" in items(job)[1].reason
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.failed_items == 1


def test_deleted_card_fails_with_reason(apple, company, card):
    job = create_wallet_job(company, cards=[card])
    BusinessCard.objects.filter(pk=card.pk).delete()
    run()
    (item,) = items(job)
    assert item.status == Status.FAILED
    assert "deleted" in item.reason


def test_interrupted_items_are_redone(apns_server, company):
    make_cards(company, 4)
    job = create_wallet_job(company)
    # A run died mid-batch: its claim is stale and two items were left `processing`.
    stale = timezone.now() - timedelta(minutes=11)
    type(job).objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, claim_token=secrets.token_hex(16), claimed_at=stale,
        heartbeat_at=stale, started_at=stale, activity_at=timezone.now(),
    )  # fmt: skip
    first_two = [item.pk for item in items(job)[:2]]
    BulkWalletApiJobItem.objects.filter(pk__in=first_two).update(
        status=Status.PROCESSING, attempts=1
    )
    summary = run()
    assert summary.claims_released == 1
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert [item.status for item in items(job)] == [Status.COMPLETED] * 4
    assert [item.attempts for item in items(job)][:2] == [2, 2]


def test_cancelled_job_is_not_processed(apple, company):
    make_cards(company, 15)
    job = create_wallet_job(company)
    run()
    assert cancel_job(job) == 5
    summary = run()
    assert summary.items_attempted == 0
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert (job.succeeded_items, job.cancelled_items) == (10, 5)


def test_no_platform_configured_pauses_without_spending_attempts(settings, company, card):
    # Configured when the job was queued, not any more when it runs.
    settings.APPLE_TEAM_ID = ""
    job = BulkWalletApiJob.objects.create(company=company, total_items=1)
    BulkWalletApiJobItem.objects.create(job=job, card=card)
    summary = run()
    assert summary.paused and "no wallet platform is configured" in summary.paused[0]
    (item,) = items(job)
    assert item.status == Status.PENDING and item.attempts == 0
    job.refresh_from_db()
    assert "APPLE_TEAM_ID" in job.reason


def test_invalid_apple_files_pause_the_job(apple, company, card, tmp_path):
    apple.APPLE_PASS_CERT = str(tmp_path / "missing.pem")
    job = create_wallet_job(company, cards=[card])
    summary = run()
    assert summary.paused
    job.refresh_from_db()
    assert "cannot read" in job.reason


@pytest.mark.parametrize("batch_size", [3])
def test_batch_size_option(apple, company, batch_size):
    make_cards(company, 7)
    create_wallet_job(company)
    # Rounds follow each other within the company's pace (10/min): 3 + 3 + 1.
    summary = run(batch_size=batch_size)
    assert (summary.batches, summary.items_succeeded) == (3, 7)


def test_unreachable_apns_pauses_without_spending_attempts(apple, company, card):
    # The apple fixture points APNs at a closed loopback port.
    register_device(card, "a" * 64)
    card.job_title = "CTO"
    card.save()
    job = create_wallet_job(company, cards=[card])
    summary = run()
    assert summary.paused and "APNs unreachable" in summary.paused[0]
    (item,) = items(job)
    assert item.status == Status.PENDING and item.attempts == 0
    job.refresh_from_db()
    assert "APNs unreachable" in job.reason
    # The new pass is stored for devices, but not recorded as pushed.
    state = CardWalletState.objects.get(card=card)
    assert b"CTO" in unzip(state.apple_pass_data)["pass.json"]
    assert item.apple_result == ""


def test_a_first_sync_batch_uses_a_bounded_number_of_queries(apple, company):
    """Per card: mark, store the pass, record its hash, record the outcome; the batch's
    wallet states are loaded (and the missing ones created) in a fixed number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_cards(company, 10)
    create_wallet_job(company)
    with CaptureQueriesContext(connection) as captured:
        summary = run()
    assert summary.items_succeeded == 10
    assert CardWalletState.objects.count() == 10
    # The fixed part includes creating the company's pace bucket and checking it again
    # before a second round, and the alerts' query for jobs needing one at the end.
    assert len(captured) <= 4 * 10 + 31
