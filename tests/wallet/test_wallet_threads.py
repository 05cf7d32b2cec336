"""Wallet batches of several companies at once, in threads of one process, as a run with
concurrency serves them: what the batches share (the run's APNs client and its one
HTTP/2 connection, the Google credentials, the signing material, the rate buckets) must
hold up, against the loopback APNs (HTTP/2) and Google servers."""

import threading

import pytest
from django.db import connection

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from cards.models import Company
from tests.conftest import make_cards
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


def serve(company_id, start, errors):
    """One thread: one company's run, on the thread's own database connection."""
    try:
        start.wait()
        run_once(get_kind("wallet"), company_ids=[company_id])
    except Exception as exc:  # reported by the test, which cannot see this thread's raise
        errors.append(exc)
    finally:
        connection.close()


def test_threads_sync_every_card_once_over_one_apns_connection(apns_server, google, settings):
    # Each answer comes 50 ms later, so the threads' pushes overlap on the connection.
    apns_server.delay = google.delay = 0.05
    settings.BULKJOBS = {**settings.BULKJOBS, "WALLET_BATCH_SIZE": CARDS}
    tokens = []
    companies = [Company.objects.create(name=f"Co {n}", slug=f"co-{n}") for n in range(COMPANIES)]
    for company in companies:
        for card in make_cards(company, CARDS, prefix=company.slug.replace("-", "")):
            tokens.append(f"{card.pk:064x}")
            register_device(card, tokens[-1])
            card.job_title = "Changed"  # so every card has something to push
            card.save()
        create_wallet_job(company)
    start = threading.Barrier(COMPANIES)
    errors = []
    threads = [
        threading.Thread(target=serve, args=(company.pk, start, errors)) for company in companies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
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


def test_many_threads_pushing_at_once_share_the_connection_without_errors(apns_server):
    # With httpx's sync HTTP/2 client shared like this, the threads interleaved their
    # frames and the server dropped the connection in most runs ("Server disconnected").
    client = apns.shared_client()
    errors = []

    def push_many(thread_number):
        for n in range(40):
            try:
                client.push(f"{thread_number:032x}{n:032x}")
            except Exception as exc:  # reported by the test, which cannot see this raise
                errors.append(exc)

    threads = [threading.Thread(target=push_many, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(apns_server.requests) == 16 * 40
    assert apns_server.connections == 1
