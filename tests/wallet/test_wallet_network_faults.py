"""Wallet sync when the network misbehaves as real networks do, against loopback servers
that misbehave on cue per device token or object id (tests/wallet/apns_server.py,
tests/wallet/google_server.py).

Pushes and Google PATCHes are idempotent, so a request that may or may not have reached
the provider is simply made again: the item is retried later (attempt spent, backoff),
the rest of the batch goes on over a new connection, and a later run completes it. No
item is left `processing`. A provider that cannot be reached at all pauses the batch
without spending attempts, as the mail server refusing connections does.
"""

import socket

import pytest

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from tests.conftest import make_cards, run_when_due
from tests.wallet.apns_server import DROP
from tests.wallet.conftest import issue_first_pass
from wallet.models import AppleDeviceRegistration, BulkWalletApiJobItem, CardWalletState
from wallet.services import create_wallet_job

pytestmark = pytest.mark.django_db


def run():
    return run_once(get_kind("wallet"))


def items(job):
    return list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id"))


def token_for(card):
    return f"{card.pk:064x}"


def cards_with_devices(company, count):
    """`count` cards, each with a pass on one device and a change to push."""
    cards = make_cards(company, count)
    for card in cards:
        state = CardWalletState.objects.for_card(card)
        issue_first_pass(state)
        AppleDeviceRegistration.objects.create(
            device_library_id=f"device-{card.pk}", push_token=token_for(card), state=state
        )
    # An UPDATE, not save(): save() would queue the cards in an automatic job.
    company.cards.update(job_title="Changed")
    return cards


@pytest.fixture
def silent_port():
    """A loopback port that never completes a TCP handshake, as a host behind a firewall
    dropping packets: its listener's accept queue is full and never read, so Linux drops
    further SYNs and a client's connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


# --- APNs -------------------------------------------------------------------------------


def test_apns_dropping_the_connection_after_a_push_retries_that_card_only(apns_server, company):
    cards = cards_with_devices(company, 4)
    dropped = token_for(cards[1])
    apns_server.reply(dropped, DROP)
    job = create_wallet_job(company)

    summary = run()

    assert (summary.items_succeeded, summary.items_retried, summary.paused) == (3, 1, [])
    item = items(job)[1]
    assert (item.status, item.attempts) == (Status.PENDING, 1)
    assert item.next_attempt_at is not None
    assert item.reason == "Apple Wallet: APNs connection lost before it answered (ReadError)."
    # The push arrived in full and was never answered; the cards after it went over a
    # second connection.
    assert apns_server.received_tokens() == [token_for(card) for card in cards]
    assert dropped not in apns_server.answered_tokens()
    assert apns_server.connections == 2
    assert {request.connection for request in apns_server.requests[1:]} == {2}
    state = CardWalletState.objects.get(card=cards[1])
    assert state.apple_content_hash != state.apple_pass_hash  # not taken for pushed

    run_when_due(get_kind("wallet"), job)

    item.refresh_from_db()
    assert (item.status, item.attempts) == (Status.COMPLETED, 2)
    assert apns_server.answered_tokens().count(dropped) == 1
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.failed_items) == (Status.COMPLETED, 4, 0)
    assert not BulkWalletApiJobItem.objects.filter(status=Status.PROCESSING).exists()


def test_an_apns_answer_slower_than_apns_timeout_is_retried(apns_server, company, settings):
    # Long enough for every other answer on a busy machine, short for a test.
    settings.APNS_TIMEOUT = 1.0
    cards = cards_with_devices(company, 3)
    slow = token_for(cards[0])
    release = apns_server.hold(slow)
    job = create_wallet_job(company)
    try:
        summary = run()
    finally:
        release.set()

    assert (summary.items_succeeded, summary.items_retried, summary.paused) == (2, 1, [])
    item = items(job)[0]
    assert (item.status, item.attempts) == (Status.PENDING, 1)
    assert item.reason == "Apple Wallet: APNs did not answer within APNS_TIMEOUT = 1 s."
    assert [item.status for item in items(job)[1:]] == [Status.COMPLETED] * 2

    run_when_due(get_kind("wallet"), job)
    item.refresh_from_db()
    assert (item.status, item.attempts) == (Status.COMPLETED, 2)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED


# --- Google Wallet ----------------------------------------------------------------------


def object_id(card):
    from wallet.google.payload import object_id_for

    return object_id_for(card)


@pytest.mark.parametrize("applied", [False, True], ids=["lost-request", "lost-answer"])
def test_google_dropping_the_connection_retries_that_card_only(google, company, applied):
    cards = make_cards(company, 3)
    dropped = object_id(cards[1])
    # First sync: the objects do not exist yet, so each card is a PATCH (404), then a POST.
    google.drop_next("POST", "genericObject", resource_id=dropped, applied=applied)
    job = create_wallet_job(company)

    summary = run()

    assert (summary.items_succeeded, summary.items_retried, summary.paused) == (2, 1, [])
    item = items(job)[1]
    assert (item.status, item.attempts) == (Status.PENDING, 1)
    assert item.reason == (
        "Google Wallet: Connection to Google Wallet lost before it answered (POST genericObject)."
    )
    assert items(job)[2].status == Status.COMPLETED  # the batch went on
    assert (dropped in google.objects) is applied
    state = CardWalletState.objects.get(card=cards[1])
    assert state.google_content_hash == ""  # not taken for synced

    run_when_due(get_kind("wallet"), job)

    item.refresh_from_db()
    assert (item.status, item.attempts) == (Status.COMPLETED, 2)
    job.refresh_from_db()
    assert (job.status, job.succeeded_items) == (Status.COMPLETED, 3)
    # Sent again (a PATCH when the lost request had been applied): the object is whole.
    assert google.objects[dropped]["header"]["defaultValue"]["value"] == cards[1].full_name
    assert not BulkWalletApiJobItem.objects.filter(status=Status.PROCESSING).exists()


def test_a_google_answer_slower_than_the_timeout_is_retried(google, company, settings):
    # Long enough for every other answer on a busy machine, short for a test.
    settings.GOOGLE_WALLET_TIMEOUT = 1.0
    cards = make_cards(company, 3)
    slow = object_id(cards[0])
    google.slow_next("PATCH", "genericObject", 2.5, resource_id=slow)
    job = create_wallet_job(company)

    summary = run()

    assert (summary.items_succeeded, summary.items_retried, summary.paused) == (2, 1, [])
    item = items(job)[0]
    assert (item.status, item.attempts) == (Status.PENDING, 1)
    assert item.reason == (
        "Google Wallet did not answer within GOOGLE_WALLET_TIMEOUT = 1 s "
        f"(PATCH genericObject/{slow})."
    )
    assert [item.status for item in items(job)[1:]] == [Status.COMPLETED] * 2

    run_when_due(get_kind("wallet"), job)
    item.refresh_from_db()
    assert (item.status, item.attempts) == (Status.COMPLETED, 2)
    assert slow in google.objects


def test_google_unreachable_pauses_without_spending_attempts(google, company, settings):
    make_cards(company, 3)
    real_base_url = settings.GOOGLE_WALLET_BASE_URL
    # The token endpoint answers (the batch opens), the API refuses connections.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.GOOGLE_WALLET_BASE_URL = f"http://127.0.0.1:{closed_port}/walletobjects/v1"
    job = create_wallet_job(company)

    summary = run()

    assert summary.items_attempted == 0
    assert len(summary.paused) == 1 and "Cannot reach Google Wallet" in summary.paused[0]
    assert {(item.status, item.attempts) for item in items(job)} == {(Status.PENDING, 0)}
    job.refresh_from_db()
    assert job.paused_at is not None
    assert "Google Wallet: Cannot reach Google Wallet (PATCH genericClass/" in job.reason

    settings.GOOGLE_WALLET_BASE_URL = real_base_url
    run()
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.paused_at) == (Status.COMPLETED, 3, None)
    assert {item.attempts for item in items(job)} == {1}


# --- no connection at all, on either platform ------------------------------------------


def test_a_connect_timeout_to_apns_pauses_without_spending_attempts(
    apns_server, company, settings, silent_port
):
    settings.APNS_TIMEOUT = 1.0
    settings.APNS_BASE_URL = f"https://127.0.0.1:{silent_port}"
    cards_with_devices(company, 2)
    job = create_wallet_job(company)

    summary = run()

    assert summary.items_attempted == 0
    assert summary.paused == [f"job {job.pk}: APNs unreachable: ConnectTimeout"]
    assert {(item.status, item.attempts) for item in items(job)} == {(Status.PENDING, 0)}


def test_a_connect_timeout_to_google_pauses_without_spending_attempts(
    google, company, settings, silent_port
):
    settings.GOOGLE_WALLET_TIMEOUT = 1.0
    settings.GOOGLE_WALLET_BASE_URL = f"http://127.0.0.1:{silent_port}/walletobjects/v1"
    make_cards(company, 2)
    job = create_wallet_job(company)

    summary = run()

    assert summary.items_attempted == 0
    (paused,) = summary.paused
    assert paused.startswith(f"job {job.pk}: Google Wallet: Cannot reach Google Wallet (PATCH ")
    assert paused.endswith("no connection within GOOGLE_WALLET_TIMEOUT = 1 s.")
    assert {(item.status, item.attempts) for item in items(job)} == {(Status.PENDING, 0)}
