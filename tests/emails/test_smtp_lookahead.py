"""The next message's envelope rides behind the previous message's final ".".

Over a relay that offers PIPELINING, a lane sends MAIL, RCPT and DATA of its next item in
the same write as the current item's body (RFC 2920 section 3.1), so every message after
the first costs one round trip. Nothing of the next message is delivered until its own
body is sent, after its item was marked: a lane that stops in between closes the
connection without QUIT, and the relay drops the open transaction.
"""

import time

import pytest

from bulkjobs import engine
from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails.models import BulkEmailJob
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp_sink(smtp_sink):
    # Before answering a ".", the sink waits a moment for an envelope sent behind it.
    smtp_sink.wait_for_next_envelope = 0.2
    return smtp_sink


def statuses(job):
    return dict(job.items.values_list("recipient_email", "status"))


def test_every_message_after_the_first_sends_its_envelope_behind_the_one_before(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, 6)
    run_once(email_kind)
    assert sorted(smtp_sink.recipients()) == sorted(
        job.items.values_list("recipient_email", flat=True)
    )
    assert smtp_sink.sessions == 1
    # The first envelope goes alone; the five after it each rode behind a final ".".
    assert smtp_sink.envelopes_behind_data == 5


def test_nothing_goes_ahead_without_pipelining(company, email_kind, smtp_sink):
    smtp_sink.pipelining = False
    make_email_job(company, 4)
    run_once(email_kind)
    assert len(smtp_sink.messages) == 4
    assert smtp_sink.envelopes_behind_data == 0


def test_a_message_refused_at_data_leaves_the_envelope_behind_it_intact(
    company, email_kind, smtp_sink
):
    # No RSET after the 554: it would be read as the next message's first line.
    job = make_email_job(company, ["a@example.org", "badcontent@example.org", "b@example.org"])
    run_once(email_kind)
    assert statuses(job) == {
        "a@example.org": Status.COMPLETED,
        "badcontent@example.org": Status.FAILED,
        "b@example.org": Status.COMPLETED,
    }
    assert smtp_sink.recipients() == ["a@example.org", "b@example.org"]
    delivered = smtp_sink.messages[-1].data
    assert delivered.startswith((b"DKIM-Signature:", b"From:", b"Content-Type:", b"MIME-Version:"))
    assert b"RSET" not in delivered
    assert smtp_sink.sessions == 1


@pytest.mark.parametrize("server_says_354", [False, True], ids=["503-at-data", "354-anyway"])
def test_an_envelope_refused_ahead_fails_its_item_and_the_lane_goes_on(
    company, email_kind, smtp_sink, server_says_354
):
    smtp_sink.data_without_recipients = server_says_354
    job = make_email_job(
        company, ["a@example.org", "reject@example.org", "tempfail@example.org", "b@example.org"]
    )
    run_once(email_kind)
    items = {item.recipient_email: item for item in job.items.all()}
    assert items["reject@example.org"].status == Status.FAILED
    assert items["reject@example.org"].reason == "Rejected at RCPT: 550 5.1.1 No such user"
    assert items["tempfail@example.org"].status == Status.PENDING
    assert "450 4.2.0" in items["tempfail@example.org"].reason
    assert smtp_sink.recipients() == ["a@example.org", "b@example.org"]
    assert smtp_sink.sessions == 1


def test_a_message_whose_reply_never_came_costs_the_envelope_behind_it_nothing(
    company, email_kind, smtp_sink
):
    job = make_email_job(
        company, ["a@example.org", "accept-then-drop@example.org", "b@example.org"]
    )
    run_once(email_kind)
    items = {item.recipient_email: item for item in job.items.all()}
    # The relay read the message and hung up before answering: delivery unknown.
    assert items["accept-then-drop@example.org"].status == Status.FAILED
    assert items["accept-then-drop@example.org"].reason.startswith("Delivery unknown")
    # The envelope that went behind it was lost with the connection; the next item went
    # over a new one, once.
    assert items["b@example.org"].status == Status.COMPLETED
    assert smtp_sink.arrivals("b@example.org") == 1
    assert smtp_sink.sessions == 2


@pytest.mark.django_db(transaction=True)
def test_a_lane_stopped_with_an_envelope_ahead_delivers_nothing_more_and_does_not_wait(
    company, email_kind, smtp_sink, settings
):
    # The job is cancelled while its second message is being accepted: the third item's
    # envelope is already at the relay, waiting for data that must never come.
    # QUIT sent into the open transaction would be answered only at EMAIL_TIMEOUT.
    settings.EMAIL_TIMEOUT = 15
    job = make_email_job(company, 5)

    def cancel_at_the_second(received):
        if len(smtp_sink.messages) == 2:
            BulkEmailJob.objects.filter(pk=job.pk).update(status=Status.CANCELLED)

    claim = engine.claim_next_job(email_kind, company.pk)
    smtp_sink.on_message = cancel_at_the_second
    started = time.monotonic()
    engine.process_one_batch(claim, 50)
    seconds = time.monotonic() - started
    claim.release()

    assert len(smtp_sink.messages) == 2
    # Closed without QUIT, which the relay would have read as message text and answered
    # only at EMAIL_TIMEOUT: the batch ends at once.
    assert seconds < 7
    # The third item, whose envelope went ahead, was never marked: not one attempt spent.
    third, *rest = job.items.order_by("id")[2:]
    assert third.attempts == 0 and third.status != Status.COMPLETED
    assert all(item.attempts == 0 for item in rest)
