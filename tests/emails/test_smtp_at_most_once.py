"""At most once inside the SMTP conversation, against a loopback server that misbehaves.

A failure before the message's final "." means nothing was delivered: the item is
retried and later delivered exactly once. Once the final "." has been sent, a lost
connection or a missing reply means the server may have the message: the item fails as
"delivery unknown" and is never sent again automatically. `sink.arrivals()` counts what
reached the server in full, i.e. what the recipient would find in their mailbox.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from bulkjobs.ops.services import ONLY_UNKNOWN, retry_failed_items
from emails.kind import reconnect_after_rejections
from tests.conftest import DatabaseTime, make_email_job, run_when_due

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[True, False], ids=["pipelining", "step-by-step"])
def smtp_sink(smtp_sink, request):
    """Every case against a relay that offers PIPELINING (as Postfix does) and one that
    does not: the replies read together must mean what they mean one by one."""
    smtp_sink.pipelining = request.param
    return smtp_sink


def item_for(job, address):
    return job.items.get(recipient_email=address)


def test_a_server_that_drops_after_the_final_dot_gets_the_message_once(
    company, email_kind, smtp_sink
):
    job = make_email_job(
        company, ["a@example.org", "accept-then-drop@example.org", "b@example.org"]
    )
    run_once(email_kind)

    item = item_for(job, "accept-then-drop@example.org")
    assert item.status == Status.FAILED and item.attempts == 1
    assert item.reason.startswith(
        "Delivery unknown: the mail server received the whole message but the connection "
        "was lost before it confirmed ("
    )
    assert item.reason.endswith(
        "not resent automatically. If it did not arrive, use "
        "'Retry items whose delivery is unknown'."
    )
    assert smtp_sink.arrivals("accept-then-drop@example.org") == 1
    assert [m.confirmed for m in smtp_sink.messages] == [True, False, True]
    # The next item went over a fresh connection, not the broken one.
    assert item_for(job, "b@example.org").status == Status.COMPLETED
    assert len({m.peer for m in smtp_sink.messages}) == 2

    # Nothing resends it: not a later run, not after any backoff would have expired.
    DatabaseTime().shift(timedelta(hours=2))
    assert run_once(email_kind).items_attempted == 0
    assert smtp_sink.arrivals("accept-then-drop@example.org") == 1
    job.refresh_from_db()
    assert (job.status, job.failed_items, job.succeeded_items) == (Status.COMPLETED, 1, 2)

    # "Retry failed items" leaves it failed; a person may decide to send it again, on its
    # own and knowing the risk.
    result = retry_failed_items(job)
    assert (result.queued, result.unknown_left) == (0, 1)
    assert retry_failed_items(job, unknown=ONLY_UNKNOWN).queued == 1
    run_once(email_kind)
    assert smtp_sink.arrivals("accept-then-drop@example.org") == 2


def test_a_reply_slower_than_email_timeout_is_delivery_unknown_and_pauses_the_job(
    company, email_kind, smtp_sink, settings
):
    # Long enough for every other reply on a busy machine, short for a test.
    settings.EMAIL_TIMEOUT = 1.0
    smtp_sink.slow_reply = 2.5
    job = make_email_job(company, ["slow-reply@example.org", "b@example.org"])
    run_once(email_kind)

    item = item_for(job, "slow-reply@example.org")
    assert item.status == Status.FAILED and item.attempts == 1
    assert item.reason.startswith("Delivery unknown: ")
    assert "(no reply within EMAIL_TIMEOUT = 1.0 s)" in item.reason
    # The server did queue it: resending would have delivered it twice.
    assert smtp_sink.arrivals("slow-reply@example.org") == 1
    assert smtp_sink.messages[0].confirmed
    # A server silent after a whole message may stay silent: the batch stops there and
    # the job pauses, the next item untouched.
    job.refresh_from_db()
    assert job.paused_at is not None
    assert "the mail server stopped answering after accepting a message" in job.reason
    assert (item_for(job, "b@example.org").status, item_for(job, "b@example.org").attempts) == (
        Status.PENDING,
        0,
    )

    # The next run's fresh connection gets an answer: b goes, the pause ends; the late
    # "250" of the old connection was never taken for a reply to anything.
    run_once(email_kind)
    assert item_for(job, "b@example.org").status == Status.COMPLETED
    assert smtp_sink.arrivals("b@example.org") == 1
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.paused_at is None

    DatabaseTime().shift(timedelta(hours=2))
    assert run_once(email_kind).items_attempted == 0
    assert smtp_sink.arrivals("slow-reply@example.org") == 1


def test_a_silence_before_the_final_dot_is_retried_and_does_not_pause(
    company, email_kind, smtp_sink, settings
):
    """No reply to RCPT within EMAIL_TIMEOUT: nothing was delivered, so the item is retried
    and the batch goes on over a fresh connection, as for any failure before the "."."""
    settings.EMAIL_TIMEOUT = 1.0
    smtp_sink.slow_reply = 2.5
    job = make_email_job(company, ["silent-at-rcpt@example.org", "b@example.org"])
    run_once(email_kind)

    item = item_for(job, "silent-at-rcpt@example.org")
    assert item.status == Status.PENDING and item.attempts == 1 and item.next_attempt_at
    assert item.reason.startswith("Connection to the mail server lost: ")
    assert smtp_sink.arrivals("silent-at-rcpt@example.org") == 0
    assert item_for(job, "b@example.org").status == Status.COMPLETED
    job.refresh_from_db()
    assert job.paused_at is None

    run_when_due(email_kind, job)
    item.refresh_from_db()
    assert (item.status, item.attempts) == (Status.COMPLETED, 2)
    assert smtp_sink.arrivals("silent-at-rcpt@example.org") == 1


@pytest.mark.parametrize("address", ["drop-at-rcpt@example.org", "drop-before-354@example.org"])
def test_a_drop_before_the_message_is_sent_is_retried_and_delivered_once(
    company, email_kind, smtp_sink, address
):
    job = make_email_job(company, ["a@example.org", address, "b@example.org"])
    run_once(email_kind)

    item = item_for(job, address)
    assert item.status == Status.PENDING and item.attempts == 1 and item.next_attempt_at
    lost = "Connection to the mail server lost: "
    # What was lost is named (an exception with no message gives its type's name).
    assert item.reason.startswith(lost) and item.reason.strip() != lost.strip()
    assert smtp_sink.arrivals(address) == 0
    assert item_for(job, "b@example.org").status == Status.COMPLETED

    run_when_due(email_kind, job)
    item.refresh_from_db()
    assert (item.status, item.attempts) == (Status.COMPLETED, 2)
    assert smtp_sink.arrivals(address) == 1
    assert sorted(smtp_sink.recipients()) == sorted(["a@example.org", "b@example.org", address])


@pytest.mark.parametrize(
    "address, status, reason",
    [
        (
            "badcontent@example.org",
            Status.FAILED,
            "Rejected at DATA: 554 5.6.0 Message content rejected",
        ),
        (
            "busy-at-data@example.org",
            Status.PENDING,
            "Temporary failure at DATA: 451 4.3.0 Queue full, try again later",
        ),
    ],
)
def test_a_reply_to_the_final_dot_is_classified_by_its_code(
    company, email_kind, smtp_sink, address, status, reason
):
    """A real reply to the final "." is not "unknown": 5xx fails, 4xx is retried."""
    job = make_email_job(company, [address, "b@example.org"])
    run_once(email_kind)
    item = item_for(job, address)
    assert (item.status, item.reason) == (status, reason)
    # The connection stayed usable (RSET, not a reconnect).
    assert item_for(job, "b@example.org").status == Status.COMPLETED
    assert smtp_sink.sessions == 1


def test_a_run_of_rejections_opens_a_fresh_connection(company, email_kind, smtp_sink, settings):
    settings.EMAIL_RECONNECT_AFTER_REJECTIONS = 3
    bad = [f"reject+{n}@example.org" for n in range(9)]
    # 2 rejections, a delivery (resets the count, as Postfix does), then 7 in a row.
    make_email_job(company, [*bad[:2], "a@example.org", *bad[2:], "b@example.org"])
    run_once(email_kind)

    per_connection = {}
    for peer, _address, accepted in smtp_sink.rcpt_log:
        per_connection.setdefault(peer, []).append(accepted)
    if smtp_sink.pipelining:
        # The DATA sent behind a refused RCPT fails too: two errors per bad address.
        assert list(per_connection.values()) == [
            [False, False],
            [True, False, False],
            [False, False],
            [False, False],
            [False, True],
        ]
    else:
        # Connection 1: 2 rejected, a delivered, 3 rejected; 2: 3 rejected; 3: 1 rejected, b.
        assert list(per_connection.values()) == [
            [False, False, True, False, False, False],
            [False, False, False],
            [False, True],
        ]


@pytest.mark.parametrize("value", [0, -1, 2.5, "5", True])
def test_the_reconnect_setting_must_be_a_positive_whole_number(settings, value):
    settings.EMAIL_RECONNECT_AFTER_REJECTIONS = value
    with pytest.raises(ImproperlyConfigured, match="EMAIL_RECONNECT_AFTER_REJECTIONS"):
        reconnect_after_rejections()
