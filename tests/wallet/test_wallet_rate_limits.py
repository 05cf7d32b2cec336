"""The Google Wallet and APNs per-request limits, shared through database buckets
(wallet/limits.py), against the loopback servers and through the real engine."""

import pytest

from bulkjobs.engine import ratelimit, run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import RateBucket, Status
from cards.models import Company
from tests.conftest import make_cards
from tests.wallet.google_server import FakeGoogleWallet, make_service_account, point_settings_at
from tests.wallet.test_wallet_jobs import register_device
from wallet import limits
from wallet.models import BulkWalletApiJobItem
from wallet.services import create_wallet_job


@pytest.fixture
def google(tmp_path, settings):
    info, key_path, public_key = make_service_account(tmp_path)
    with FakeGoogleWallet(public_key, info["client_email"]) as fake:
        point_settings_at(settings, fake, key_path)
        yield fake


def run(**options):
    return run_once(get_kind("wallet"), **options)


def items(job):
    return list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id"))


def drain(key, rate_text):
    """Spend the bucket's whole burst, as other processes would have."""
    rate = ratelimit.parse_rate(rate_text)
    assert ratelimit.take(key, rate, rate.burst).granted == rate.burst


@pytest.mark.django_db(transaction=True)  # the run's threads must see the jobs
@pytest.mark.parametrize("companies", [1, 4])
def test_google_requests_stay_within_the_shared_rate(google, settings, companies):
    settings.GOOGLE_WALLET_RATE_LIMIT = "5/s"
    for number in range(companies):
        company = Company.objects.create(name=f"Co {number}", slug=f"co-{number}")
        make_cards(company, 8 // companies, prefix=f"Co{number}")
        create_wallet_job(company)

    summary = run(concurrency=companies)

    # A first sync: per company its class created once, per card its object created once.
    # (Four companies contending for 5/s may wait longer than is worth sleeping: a batch
    # is then given back and goes on within the same run once the next slot opens.)
    posts = [path for method, path, _body in google.requests if method == "POST"]
    assert posts.count("genericClass") == companies
    assert posts.count("genericObject") == 8
    assert summary.items_succeeded == 8
    # Nothing was retried: a wait never spends an attempt.
    assert all(
        item.status == Status.COMPLETED and item.attempts == 1
        for item in BulkWalletApiJobItem.objects.all()
    )
    # Counted at the server: any stretch of the run saw at most the burst plus the rate
    # times its length (one request of slack for the hop from bucket to server, and the
    # stretch taken 0.2 s longer: on a loaded machine requests let go a little apart can
    # reach the server's thread together).
    times = google.request_times
    for first in range(len(times)):
        for last in range(first, len(times)):
            assert last - first + 1 <= 5 + 5 * (times[last] - times[first] + 0.2) + 1


def test_a_long_wait_gives_the_item_back_and_the_job_says_why(google, company, settings):
    settings.GOOGLE_WALLET_RATE_LIMIT = "2/min"
    drain(limits.GOOGLE_BUCKET, "2/min")
    make_cards(company, 3)
    job = create_wallet_job(company)

    # The next slot opens after the run's budget: the run does not wait for it.
    summary = run(max_seconds=5)

    assert google.requests == []
    assert summary.items_succeeded == summary.items_retried == 0
    assert all(item.status == Status.PENDING and item.attempts == 0 for item in items(job))
    job.refresh_from_db()
    assert job.reason.startswith("Waiting for the Google Wallet rate limit (2/min); next slot at")
    assert not job.paused_at


def test_the_limit_off_costs_no_bucket(google, company, settings):
    settings.GOOGLE_WALLET_RATE_LIMIT = "0"
    make_cards(company, 2)
    create_wallet_job(company)
    assert run().items_succeeded == 2
    assert not RateBucket.objects.filter(key=limits.GOOGLE_BUCKET).exists()


def test_the_default_limit_is_20_per_second(google, company):
    make_cards(company, 2)
    create_wallet_job(company)
    assert run().items_succeeded == 2
    assert limits.google_limit().what == "the Google Wallet rate limit (20/s)"
    assert RateBucket.objects.filter(key=limits.GOOGLE_BUCKET).exists()


def test_a_malformed_google_limit_pauses_the_job_naming_the_setting(google, company, settings):
    settings.GOOGLE_WALLET_RATE_LIMIT = "fast"
    make_cards(company, 1)
    job = create_wallet_job(company)
    run()
    job.refresh_from_db()
    (item,) = items(job)
    assert item.status == Status.PENDING and item.attempts == 0
    assert "GOOGLE_WALLET_RATE_LIMIT must look like '50/min'" in job.reason


def test_apns_limit_off_by_default(apns_server, company, card):
    register_device(card, "a" * 64)
    card.job_title = "CTO"
    card.save()
    create_wallet_job(company, cards=[card])
    assert run().items_succeeded == 1
    assert len(apns_server.requests) == 1
    assert not RateBucket.objects.filter(key=limits.APNS_BUCKET).exists()


def test_apns_limit_waits_briefly_then_gives_the_item_back(apns_server, company, settings):
    settings.APNS_RATE_LIMIT = "2/min"
    cards = make_cards(company, 3)
    for card in cards:
        register_device(card, f"{card.pk:064x}")
        card.job_title = "CTO"
        card.save()
    job = create_wallet_job(company)

    run(max_seconds=5)  # the next slot opens after the run's budget

    # The burst of 2 pushed two cards; the third's push would wait 30 s: given back.
    assert len(apns_server.requests) == 2
    statuses = sorted(item.status for item in items(job))
    assert statuses == [Status.COMPLETED, Status.COMPLETED, Status.PENDING]
    assert [item.attempts for item in items(job) if item.status == Status.PENDING] == [0]
    job.refresh_from_db()
    assert job.reason.startswith("Waiting for the APNs rate limit (2/min); next slot at")


def test_acquire_sleeps_for_a_near_slot(db, settings):
    settings.GOOGLE_WALLET_RATE_LIMIT = "10/s"
    drain(limits.GOOGLE_BUCKET, "10/s")
    drained = RateBucket.objects.get(key=limits.GOOGLE_BUCKET).tat
    # The next slot is 0.1 s away: worth waiting for, so no RateLimited.
    limits.google_limit().acquire()
    assert RateBucket.objects.get(key=limits.GOOGLE_BUCKET).tat == pytest.approx(drained + 0.1)
