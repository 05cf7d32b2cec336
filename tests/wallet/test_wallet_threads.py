"""Wallet batches of several companies at once, in threads of one process (a run with
concurrency, and plain threads): what the batches share (the run's APNs client and its one
HTTP/2 connection, the Google credentials, the signing material, the rate buckets) must
hold up, against the loopback APNs (HTTP/2) and Google servers."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from cards.models import Company
from tests.conftest import DatabaseTime, make_cards
from tests.wallet.apns_server import DROP
from tests.wallet.google_server import FakeGoogleWallet, make_service_account, point_settings_at
from tests.wallet.test_wallet_jobs import register_device
from wallet.apple import apns
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem, PlatformResult
from wallet.services import create_wallet_job

pytestmark = pytest.mark.django_db(transaction=True)

COMPANIES = 4
CARDS = 6


@pytest.fixture
def google(tmp_path, settings):
    info, key_path, public_key = make_service_account(tmp_path)
    with FakeGoogleWallet(public_key, info["client_email"]) as fake:
        point_settings_at(settings, fake, key_path)
        yield fake


def test_a_concurrent_run_syncs_every_card_once_over_one_apns_connection(
    apns_server, google, settings
):
    # Each answer comes 50 ms later, so the threads' pushes overlap on the connection.
    apns_server.delay = google.delay = 0.05
    settings.BULKJOBS = {**settings.BULKJOBS, "WALLET_BATCH_SIZE": CARDS}
    tokens = []
    companies = [Company.objects.create(name=f"Co {n}", slug=f"co-{n}") for n in range(COMPANIES)]
    for company in companies:
        for card in make_cards(company, CARDS, prefix=company.slug.replace("-", "")):
            tokens.append(f"{card.pk:064x}")
            register_device(card, tokens[-1])
        # So every card has something to push; an UPDATE rather than save(), which
        # would queue the cards in automatic jobs (tested in test_wallet_autosync.py).
        company.cards.update(job_title="Changed")
        create_wallet_job(company)

    # Worker threads' errors reach the caller, so a clean return means none.
    summary = run_once(get_kind("wallet"), concurrency=COMPANIES)

    assert summary.companies_served == COMPANIES
    assert {job.status for job in BulkWalletApiJob.objects.all()} == {Status.COMPLETED}
    synced = BulkWalletApiJobItem.objects.filter(
        apple_result=PlatformResult.SYNCED, google_result=PlatformResult.SYNCED
    )
    assert synced.count() == COMPANIES * CARDS
    assert sorted(request.token for request in apns_server.requests) == sorted(tokens)
    # One connection for the process, carrying several threads' pushes at the same time.
    assert apns_server.connections == 1
    assert apns_server.max_open_streams >= 2
    # One OAuth token for the batches that started together; every card's object once.
    assert google.token_requests == 1
    assert len(google.objects) == COMPANIES * CARDS


def companies_with_devices(settings):
    """COMPANIES companies with CARDS cards each, every card on a device with a change to
    push, and a job each; returns the device tokens."""
    settings.BULKJOBS = {**settings.BULKJOBS, "WALLET_BATCH_SIZE": CARDS}
    tokens = []
    for n in range(COMPANIES):
        company = Company.objects.create(name=f"Co {n}", slug=f"co-{n}")
        for card in make_cards(company, CARDS, prefix=f"co{n}"):
            tokens.append(f"{card.pk:064x}")
            register_device(card, tokens[-1])
        company.cards.update(job_title="Changed")
        create_wallet_job(company)
    return tokens


@pytest.mark.parametrize("fault", ["reset", "no answer"])
def test_an_apns_fault_fails_only_the_pushes_on_the_connection_and_every_batch_goes_on(
    apns_server, settings, fault
):
    apns_server.delay = 0.05  # so the threads' pushes are in flight together
    settings.APNS_TIMEOUT = 1.0
    tokens = companies_with_devices(settings)
    if fault == "reset":
        apns_server.reply(tokens[1], DROP)
        answer = None
    else:
        answer = apns_server.hold(tokens[1])

    try:
        summary = run_once(get_kind("wallet"), concurrency=COMPANIES)
    finally:
        if answer is not None:
            answer.set()

    # The reset, or the read timeout, failed the pushes in flight on the shared
    # connection (httpcore fails them all alike), whichever company they were for:
    # retried, not paused, and the rest went over a new connection.
    assert summary.paused == []
    assert summary.items_retried >= 1
    assert summary.items_succeeded + summary.items_retried == COMPANIES * CARDS
    assert apns_server.connections >= 2
    items = BulkWalletApiJobItem.objects.all()
    assert not items.filter(status=Status.PROCESSING).exists()
    retried = items.filter(status=Status.PENDING)
    assert {item.attempts for item in retried} == {1}

    due = max(retried.values_list("next_attempt_at", flat=True))
    DatabaseTime().move_to(due + timedelta(seconds=1))
    run_once(get_kind("wallet"), concurrency=COMPANIES)
    assert {job.status for job in BulkWalletApiJob.objects.all()} == {Status.COMPLETED}
    assert set(apns_server.answered_tokens()) == set(tokens)


def test_many_threads_pushing_at_once_share_the_connection_without_errors(apns_server):
    # With httpx's sync HTTP/2 client shared like this, the threads interleaved their
    # frames and the server dropped the connection in most runs ("Server disconnected").
    client = apns.shared_client()
    errors = []

    def push_many(thread_number):
        try:
            for n in range(40):
                try:
                    client.push(f"{thread_number:032x}{n:032x}")
                except Exception as exc:  # reported by the test, which cannot see this raise
                    errors.append(exc)
        finally:
            # The provider token is read in this thread: its own database connection,
            # which would otherwise keep PostgreSQL from dropping the test database.
            connection.close()

    threads = [threading.Thread(target=push_many, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(apns_server.requests) == 16 * 40
    assert apns_server.connections == 1
