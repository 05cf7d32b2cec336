"""Google Wallet through the wallet job kind and the real engine, against the loopback server."""

import pytest

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from tests.conftest import make_cards
from tests.wallet.google_server import FakeGoogleWallet, make_service_account, point_settings_at
from wallet.models import BulkWalletApiJobItem, CardWalletState, PlatformResult
from wallet.services import create_wallet_job


@pytest.fixture
def google(tmp_path, settings):
    info, key_path, public_key = make_service_account(tmp_path)
    with FakeGoogleWallet(public_key, info["client_email"]) as fake:
        point_settings_at(settings, fake, key_path)
        fake.key_path = key_path
        yield fake


def run():
    return run_once(get_kind("wallet"))


def items(job):
    return list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id"))


def test_job_syncs_cards_then_skips_unchanged(google, company):
    cards = make_cards(company, 3)

    job = create_wallet_job(company)
    run()

    assert [item.status for item in items(job)] == [Status.COMPLETED] * 3
    assert {item.google_result for item in items(job)} == {PlatformResult.SYNCED}
    assert len(google.objects) == 3
    assert google.token_requests == 1
    states = CardWalletState.objects.filter(card__in=cards)
    assert all(len(state.google_content_hash) == 64 for state in states)

    api_calls = len(google.requests)
    job = create_wallet_job(company)
    run()
    assert {item.google_result for item in items(job)} == {PlatformResult.UNCHANGED}
    assert len(google.requests) == api_calls


def test_rate_limited_card_is_retried_and_others_complete(google, company):
    make_cards(company, 3)
    google.fail_next("PATCH", "genericObject", 429, "Too many requests", {"Retry-After": "30"})

    job = create_wallet_job(company)
    run()

    statuses = [item.status for item in items(job)]
    assert statuses.count(Status.COMPLETED) == 2
    (retried,) = [item for item in items(job) if item.status == Status.PENDING]
    assert "429" in retried.reason and "Too many requests" in retried.reason
    assert retried.next_attempt_at is not None


def test_rejected_card_fails_with_googles_words(google, company):
    make_cards(company, 1)
    google.fail_next("PATCH", "genericObject", 400, "Invalid barcode value")

    job = create_wallet_job(company)
    run()

    (item,) = items(job)
    assert item.status == Status.FAILED
    assert "Invalid barcode value" in item.reason


def test_unreadable_key_pauses_the_batch_without_spending_attempts(google, company, settings):
    make_cards(company, 2)
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(google.key_path.with_name("gone.json"))

    job = create_wallet_job(company)
    summary = run()

    assert summary.items_succeeded == 0
    assert [(item.status, item.attempts) for item in items(job)] == [(Status.PENDING, 0)] * 2
    assert google.requests == [] and google.token_requests == 0


def test_refused_key_pauses_the_batch(google, company, settings, tmp_path):
    make_cards(company, 2)
    other = tmp_path / "other"
    other.mkdir()
    _, unknown_key_path, _ = make_service_account(other)
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(unknown_key_path)

    job = create_wallet_job(company)
    run()

    assert [(item.status, item.attempts) for item in items(job)] == [(Status.PENDING, 0)] * 2
    assert google.token_errors and google.requests == []
