"""Mail connections kept open from one batch to the next (emails/connections.py).

A batch that ends with a healthy connection leaves it for the next batch, of any
company, and a worker's next run; never one with an error reply the relay counts, one
the relay closed meanwhile, or one older than BULKJOBS_EMAIL_KEEP_CONNECTIONS_SECONDS.
A kept connection that turns out to be gone costs its first message nothing.
"""

import time

import pytest
from django.core.mail import get_connection

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails import connections
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def keep_seconds(settings):
    def keep(seconds):
        settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_KEEP_CONNECTIONS_SECONDS": seconds}

    return keep


def test_batches_one_after_another_share_one_connection(
    company, other_company, email_kind, smtp_sink
):
    make_email_job(company, 5)
    make_email_job(other_company, 5)
    run_once(email_kind, concurrency=1)
    assert len(smtp_sink.messages) == 10
    assert smtp_sink.greetings == 1
    assert len(connections.pool) == 1


def test_a_workers_next_run_takes_the_connection_the_last_one_kept(
    company, other_company, email_kind, smtp_sink
):
    make_email_job(company, 3)
    run_once(email_kind)
    make_email_job(other_company, 3)
    run_once(email_kind)
    assert len(smtp_sink.messages) == 6
    assert smtp_sink.greetings == 1


def test_with_keeping_off_every_batch_opens_its_own(
    company, other_company, email_kind, smtp_sink, keep_seconds
):
    keep_seconds(0)
    make_email_job(company, 3)
    make_email_job(other_company, 3)
    run_once(email_kind, concurrency=1)
    assert len(smtp_sink.messages) == 6
    assert smtp_sink.greetings == 2
    assert len(connections.pool) == 0


def test_a_connection_kept_past_its_time_is_closed_not_taken(
    company, other_company, email_kind, smtp_sink, keep_seconds
):
    keep_seconds(0.2)
    make_email_job(company, 2)
    run_once(email_kind)
    time.sleep(0.4)
    make_email_job(other_company, 2)
    run_once(email_kind)
    assert len(smtp_sink.messages) == 4
    assert smtp_sink.greetings == 2


def test_a_connection_the_relay_closed_meanwhile_is_not_taken(
    company, other_company, email_kind, smtp_sink
):
    make_email_job(company, 2)
    run_once(email_kind)
    assert len(connections.pool) == 1
    smtp_sink.hang_up()
    # Seen closed when asked for, and closed rather than handed out.
    assert not connections.pool.take(get_connection())
    assert len(connections.pool) == 0
    job = make_email_job(other_company, 2)
    run_once(email_kind)
    assert len(smtp_sink.messages) == 4
    assert all(item.attempts == 1 for item in job.items.all())
    assert smtp_sink.greetings == 2


def test_a_connection_ending_on_an_error_reply_is_not_kept(
    company, other_company, email_kind, smtp_sink
):
    # The relay counts error replies per connection (Postfix slows down after 10).
    make_email_job(company, ["a@example.org", "reject@example.org"])
    run_once(email_kind)
    assert len(connections.pool) == 0
    make_email_job(other_company, ["b@example.org"])
    run_once(email_kind)
    assert smtp_sink.recipients() == ["a@example.org", "b@example.org"]
    assert smtp_sink.greetings == 2


def test_a_kept_connection_gone_without_a_word_costs_its_first_message_nothing(
    company, other_company, email_kind, smtp_sink
):
    make_email_job(company, ["a@example.org"])
    run_once(email_kind)
    assert len(connections.pool) == 1
    # The relay drops the kept connection at the next message's RCPT (as one that forgot
    # it would fail the first command): nothing was delivered, so it goes once more over
    # a new connection, in the same attempt.
    job = make_email_job(other_company, ["drop-at-rcpt@example.org", "b@example.org"])
    run_once(email_kind)
    item = job.items.get(recipient_email="drop-at-rcpt@example.org")
    assert (item.status, item.attempts) == (Status.COMPLETED, 1)
    assert smtp_sink.recipients() == [
        "a@example.org",
        "drop-at-rcpt@example.org",
        "b@example.org",
    ]
    assert smtp_sink.greetings == 2


def test_a_fresh_connection_that_drops_still_retries_the_item_later(company, email_kind, smtp_sink):
    # Only a kept connection's first message is sent once more at once: on a connection
    # opened for it, a drop is the relay's trouble, and the item waits for its retry.
    job = make_email_job(company, ["drop-at-rcpt@example.org", "b@example.org"])
    run_once(email_kind)
    item = job.items.get(recipient_email="drop-at-rcpt@example.org")
    assert (item.status, item.attempts) == (Status.PENDING, 1)
    assert item.reason_code == "connection_lost"
