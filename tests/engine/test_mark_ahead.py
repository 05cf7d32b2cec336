"""BULKJOBS_MARK_AHEAD: a lane marks several items `processing` in one statement, with
the outcomes of the ones before, instead of one statement per item.

Every item is still marked and committed before it is sent, and each row keeps its own
conditions. What it trades (docs/lifecycle.md): a lane that loses its claim, or a
process that dies, may have marked up to that many items it never sent, settled by the
kind's interrupted policy like the one in hand; a lane that is told to stop gives them
back itself.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bulkjobs import engine
from bulkjobs.engine.threads import StopSignal
from bulkjobs.models import Status
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_email_job
from tests.engine.test_engine_rules import process_a_batch_while, taking_over_at

pytestmark = pytest.mark.django_db

# MariaDB and MySQL have no UPDATE ... RETURNING: there each outcome is its own
# statement, and only the marks go together.
ONE_STATEMENT = connection.vendor in ("postgresql", "sqlite")
ITEMS_TABLE = BulkEmailJobItem._meta.db_table


@pytest.fixture
def five_ahead(settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "MARK_AHEAD": "5", "EMAIL_COMPANY_RATE": "0"}


def item_writes(captured):
    return [
        q["sql"]
        for q in captured
        if q["sql"].startswith(f'UPDATE "{ITEMS_TABLE}"')
        or q["sql"].startswith(f"UPDATE `{ITEMS_TABLE}`")
    ]


def rows(job):
    return list(job.items.order_by("id").values_list("status", "attempts"))


def test_a_lane_writes_its_items_in_groups(company, email_kind, smtp_sink, five_ahead):
    job = make_email_job(company, 10)
    claim = engine.claim_next_job(email_kind, company.pk)
    with CaptureQueriesContext(connection) as captured:
        result = engine.process_one_batch(claim, 50)
    claim.release()
    assert len(smtp_sink.messages) == 10
    assert result.summary.items_succeeded == 10
    # Marks 1-5; outcomes 1-5 with marks 6-10; outcomes 6-10 (one at a time: 20).
    assert len(item_writes(captured)) == (3 if ONE_STATEMENT else 2 + 5 + 5)
    assert rows(job) == [(Status.COMPLETED, 1)] * 10
    for item in job.items.all():
        assert [(e["n"], e["status"]) for e in item.attempt_log] == [(1, "completed")]
        assert item.processed_at is not None
    job.refresh_from_db()
    assert (job.succeeded_items, job.failed_items) == (10, 0)


def test_outcomes_of_every_kind_go_in_one_statement(company, email_kind, smtp_sink, five_ahead):
    job = make_email_job(
        company,
        ["ok1@example.net", "reject@example.net", "tempfail@example.net", "ok2@example.net"],
    )
    engine.run_once(email_kind)
    by_address = {i.recipient_email: i for i in job.items.all()}
    assert by_address["ok1@example.net"].status == Status.COMPLETED
    assert by_address["ok2@example.net"].status == Status.COMPLETED
    rejected = by_address["reject@example.net"]
    assert (rejected.status, rejected.attempts) == (Status.FAILED, 1)
    assert rejected.provider_reply.startswith("550")
    retried = by_address["tempfail@example.net"]
    assert (retried.status, retried.attempts) == (Status.PENDING, 1)
    assert retried.next_attempt_at is not None
    assert [e["status"] for e in retried.attempt_log] == ["pending"]
    assert len(smtp_sink.messages) == 2


def test_a_lane_told_to_stop_gives_back_the_items_it_marked_and_did_not_send(
    company, email_kind, smtp_sink, five_ahead
):
    job = make_email_job(company, 10)
    claim = engine.claim_next_job(email_kind, company.pk)
    stop = StopSignal()

    def stop_at_the_second(received):
        if len(smtp_sink.messages) == 2:
            stop.set()  # the command's SIGTERM, say

    smtp_sink.on_message = stop_at_the_second
    result = engine.process_one_batch(claim, 50, stop=stop)
    claim.release()
    assert len(smtp_sink.messages) == 2
    assert result.summary.items_succeeded == 2
    # Items 3-5 were marked with the first two: pending again, their attempt refunded.
    assert rows(job) == [(Status.COMPLETED, 1)] * 2 + [(Status.PENDING, 0)] * 8


@pytest.mark.django_db(transaction=True)
def test_a_lane_that_lost_its_claim_sends_the_rest_of_its_group(
    company, email_kind, smtp_sink, five_ahead
):
    """The trade: the claim is checked when the next group is marked, so the group in
    hand goes out whole; its items stay `processing` for the new owner to settle by the
    kind's policy (an email's: failed as "delivery unknown", never sent twice)."""
    job = make_email_job(company, 10)
    summary = process_a_batch_while(
        email_kind, company, smtp_sink, taking_over_at(job, smtp_sink, 3)
    )
    assert len(smtp_sink.messages) == 5
    assert summary.items_succeeded == 0
    assert rows(job) == [(Status.PROCESSING, 1)] * 5 + [(Status.PENDING, 0)] * 5
    assert BulkEmailJob.objects.get(pk=job.pk).claim_token == "new-owner"


def test_the_claims_group_write_keeps_each_rows_conditions(company, email_kind):
    job = make_email_job(company, 4)
    claim = engine.claim_next_job(email_kind, company.pk)
    first, second, third, fourth = job.items.order_by("id")
    assert claim.record_and_mark_many([], [first.pk, second.pk]) == (set(), {first.pk, second.pk})
    job.items.filter(pk=fourth.pk).update(status=Status.CANCELLED)
    done = {"status": Status.COMPLETED, "reason": "", "processed_at": job.created_at}
    retry = {
        "status": Status.PENDING,
        "reason": "451 try later",
        "next_attempt_at": job.created_at,
        "processed_at": None,
    }
    recorded, marked = claim.record_and_mark_many(
        [(first.pk, done, job.created_at), (second.pk, retry, job.created_at)],
        [third.pk, fourth.pk],
    )
    assert (recorded, marked) == ({first.pk, second.pk}, {third.pk})
    assert rows(job) == [
        (Status.COMPLETED, 1),
        (Status.PENDING, 1),
        (Status.PROCESSING, 1),
        (Status.CANCELLED, 0),
    ]
    second.refresh_from_db()
    assert (second.reason, second.next_attempt_at) == ("451 try later", job.created_at)
    assert [e["status"] for e in second.attempt_log] == ["pending"]
    # A claim lost: nothing is written, nothing marked.
    BulkEmailJob.objects.filter(pk=job.pk).update(claim_token="another-run")
    assert claim.record_and_mark_many([(third.pk, done, job.created_at)], [second.pk]) == (
        set(),
        set(),
    )
    assert rows(job)[2] == (Status.PROCESSING, 1)


def test_outcomes_written_together_keep_every_value(company, email_kind):
    """On PostgreSQL outcomes that set the same fields travel as one JSON parameter:
    times keep their microseconds, JSON stays JSON, text its quotes and accents."""
    job = make_email_job(company, 4)
    claim = engine.claim_next_job(email_kind, company.pk)
    items = list(job.items.order_by("id"))
    *handled, last = items
    assert claim.record_and_mark_many([], [item.pk for item in handled]) == (
        set(),
        {item.pk for item in handled},
    )
    when = datetime(2026, 12, 6, 17, 30, 1, 123456, tzinfo=UTC)
    records = []
    for n, item in enumerate(handled):
        records.append(
            (
                item.pk,
                {
                    "status": Status.FAILED,
                    "reason": f"550 5.1.1 «unbekannt» 'user{n}'",
                    "reason_code": "smtp_refused",
                    "reason_params": {"code": 550, "words": "Zustellung ü"},
                    "provider_reply": f'550 "user{n}" unknown',
                    "next_attempt_at": None,
                    "processed_at": when + timedelta(microseconds=n),
                },
                when + timedelta(microseconds=n),
            )
        )
    assert claim.record_and_mark_many(records, [last.pk]) == (
        {item.pk for item in handled},
        {last.pk},
    )
    for n, item in enumerate(handled):
        item.refresh_from_db()
        assert (item.status, item.attempts) == (Status.FAILED, 1)
        assert item.reason == f"550 5.1.1 «unbekannt» 'user{n}'"
        assert item.reason_params == {"code": 550, "words": "Zustellung ü"}
        assert item.provider_reply == f'550 "user{n}" unknown'
        assert item.processed_at == when + timedelta(microseconds=n)
        assert item.next_attempt_at is None
        (entry,) = item.attempt_log
        assert (entry["n"], entry["status"]) == (1, "failed")
        assert entry["at"] == (when + timedelta(microseconds=n)).isoformat()
    last.refresh_from_db()
    assert (last.status, last.attempts, last.attempt_log) == (Status.PROCESSING, 1, [])
