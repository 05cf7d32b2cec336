"""A relay that takes each whole message and then stops answering pauses the job, as an
unreachable one does: each connection leaves at most one item "delivery unknown" (the
server has the message; the client cannot know), the other items wait with no attempt
spent, the next run probes the relay over one connection, and once it answers again the
job completes with nobody sent twice.

Transactional: a batch's lanes are threads with database connections of their own.
`smtp_sink.messages` is what reached the relay in full, i.e. what recipients will get.
"""

from collections import Counter

import pytest

from bulkjobs.engine import run_once
from bulkjobs.models import PAUSED_PREFIX, Status
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)

LANES = 4
SILENT_CAUSE = (
    "the mail server stopped answering after accepting a message (no reply within 1 s): its "
    "delivery is unknown, and the other emails wait until the server answers again"
)


@pytest.fixture
def silent_relay(smtp_sink, settings):
    settings.EMAIL_TIMEOUT = 1
    settings.BULKJOBS = {
        **settings.BULKJOBS,
        "EMAIL_CONNECTIONS": str(LANES),
        "EMAIL_COMPANY_RATE": "0",
    }
    smtp_sink.silent = True
    return smtp_sink


def unknown_items(job):
    return job.items.filter(status=Status.FAILED, reason__startswith="Delivery unknown: ")


def test_a_relay_silent_after_each_message_pauses_the_job_and_nobody_gets_it_twice(
    company, email_kind, silent_relay, caplog
):
    recipients = [f"person{n}@example.org" for n in range(60)]
    job = make_email_job(company, recipients)

    summary = run_once(email_kind, concurrency=1, batch_size=60)

    job.refresh_from_db()
    assert job.status == Status.PROCESSING and job.paused_at is not None
    assert job.reason == PAUSED_PREFIX + SILENT_CAUSE
    assert job.claim_token is None
    # One batch: a job paused by its relay is not served again in the same run.
    assert summary.batches == 1 and summary.paused == [f"job {job.pk}: {SILENT_CAUSE}"]
    assert any(r.levelname == "ERROR" and SILENT_CAUSE in r.getMessage() for r in caplog.records)
    unknown = list(unknown_items(job))
    # At most one item per connection: each lane stopped after its first silent reply.
    assert 1 <= len(unknown) <= LANES
    assert len(silent_relay.messages) == len(unknown)
    assert len({m.peer for m in silent_relay.messages}) == len(unknown)
    assert sorted(silent_relay.recipients()) == sorted(i.recipient_email for i in unknown)
    assert all(
        i.attempts == 1 and "no reply within EMAIL_TIMEOUT = 1 s" in i.reason for i in unknown
    )
    # Every other item waits, with no attempt spent.
    others = job.items.exclude(pk__in=[i.pk for i in unknown])
    assert set(others.values_list("status", "attempts")) == {(Status.PENDING, 0)}
    assert (job.failed_items, job.succeeded_items) == (len(unknown), 0)

    # Still silent at the next run: its batch probes over one connection, one item more.
    summary = run_once(email_kind, concurrency=1, batch_size=60)
    assert (summary.items_failed, summary.items_attempted) == (1, 1)
    assert len(silent_relay.messages) == len(unknown) + 1
    job.refresh_from_db()
    assert job.paused_at is not None and job.reason == PAUSED_PREFIX + SILENT_CAUSE
    unknown = list(unknown_items(job))
    assert len(unknown) == len(silent_relay.messages)

    # The relay answers again: the probe gets through, the pause ends and the job completes.
    silent_relay.silent = False
    summary = run_once(email_kind, concurrency=1, batch_size=20)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.paused_at is None
    assert summary.items_succeeded == 60 - len(unknown) and summary.items_failed == 0
    # Nobody got the email twice, and everybody got it once: the unknown ones too.
    arrivals = Counter(silent_relay.recipients())
    assert set(arrivals) == set(recipients) and set(arrivals.values()) == {1}
    confirmed = {r for m in silent_relay.messages if m.confirmed for r in m.rcpt_tos}
    completed = set(
        job.items.filter(status=Status.COMPLETED).values_list("recipient_email", flat=True)
    )
    assert completed == confirmed and len(completed) == 60 - len(unknown)
    assert set(unknown_items(job)) == set(unknown)  # never resent automatically
    assert set(job.items.values_list("attempts", flat=True)) == {1}
    assert (job.succeeded_items, job.failed_items) == (60 - len(unknown), len(unknown))
    # After the probe, the batches had every lane again.
    assert len({m.peer for m in silent_relay.messages if m.confirmed}) > 1
