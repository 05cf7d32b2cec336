"""A batch's lanes sized to the relay's reply time (EmailJobKind.min_items_per_lane()).

Against a relay on the same host a lane is worth it for 10 items; against one a round
trip of 7 ms or more away, for 3, so one company's batch spreads over the connections
the run holds. The reply time is the least of the last replies, so a process that
reads replies late because it is busy does not open more lanes and get busier still.
"""

import pytest

from bulkjobs.engine import run_once
from emails.smtp import ReplyTime, reply_time
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)


def connections_used(smtp_sink, job):
    """The connections the job's recipients were accepted over."""
    recipients = set(job.items.values_list("recipient_email", flat=True))
    return len({peer for peer, address, accepted in smtp_sink.rcpt_log if address in recipients})


@pytest.fixture
def four_connections(settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_CONNECTIONS": "4", "EMAIL_COMPANY_RATE": "0"}


def test_a_distant_relay_spreads_one_companys_batch_over_more_connections(
    company, other_company, smtp_sink, email_kind, four_connections
):
    smtp_sink.delay = 0.03  # each message's "." is answered 30 ms late
    first = make_email_job(company, 12)
    run_once(email_kind, batch_size=12)
    # Nothing measured yet: 10 items a lane, so two lanes.
    assert connections_used(smtp_sink, first) == 2
    # Timed from the moment the "." left this process, so a little under the 30 ms.
    assert 0.02 <= reply_time.seconds < 0.2
    assert email_kind.min_items_per_lane() == 3

    second = make_email_job(other_company, 12)
    run_once(email_kind, batch_size=12)
    assert connections_used(smtp_sink, second) == 4
    assert len(smtp_sink.messages) == 24


def test_a_near_relay_keeps_two_lanes_for_twelve_items(
    company, other_company, smtp_sink, email_kind, four_connections
):
    # The relay answered within 0.2 ms before: it is on this host. (Measured only from
    # this test's own replies, a test machine loaded by other runs read every one of
    # them 4 ms late or more, took the relay for a distant one and opened a third lane.)
    reply_time.note(0.0002)
    make_email_job(company, 12)
    run_once(email_kind, batch_size=12)
    assert reply_time.seconds <= 0.0002  # the least of the replies seen
    make_email_job(other_company, 12)
    run_once(email_kind, batch_size=12)
    assert len(smtp_sink.messages) == 24
    assert email_kind.min_items_per_lane() == 10  # so two lanes for twelve items
    # Two lanes per batch, their connections kept from one batch to the next: at most
    # two greetings (one, when a loaded machine starts the second lane after the first
    # has ended and kept its connection).
    assert 1 <= smtp_sink.greetings <= 2


@pytest.mark.parametrize(
    ("reply_seconds", "items_per_lane"),
    [(None, 10), (0.0002, 10), (0.002, 10), (0.004, 5), (0.007, 3), (0.08, 3)],
)
def test_items_per_lane_by_reply_time(email_kind, reply_seconds, items_per_lane):
    reply_time.forget()
    if reply_seconds is not None:
        reply_time.note(reply_seconds)
    try:
        assert email_kind.min_items_per_lane() == items_per_lane
    finally:
        reply_time.forget()


def test_the_reply_time_is_the_least_of_the_recent_replies():
    replies = ReplyTime()
    assert replies.seconds is None
    for seconds in (0.02, 0.021, 0.5, 0.02):  # one read late by a busy process
        replies.note(seconds)
    assert replies.seconds == 0.02
    for _ in range(ReplyTime.SAMPLES):
        replies.note(0.08)  # the relay moved further away
    assert replies.seconds == 0.08
