"""An item's outcome and the next item's mark go in one statement where the database can
say which rows it changed (UPDATE ... RETURNING), each row under its own conditions."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bulkjobs import engine
from bulkjobs.models import Status
from emails.models import BulkEmailJob
from tests.conftest import make_email_job
from tests.engine.test_engine_rules import process_a_batch_while

pytestmark = pytest.mark.django_db

# MariaDB and MySQL have no UPDATE ... RETURNING: there the two writes stay two statements.
ONE_STATEMENT = connection.vendor in ("postgresql", "sqlite")


def claimed_items(company, email_kind, count):
    job = make_email_job(company, count)
    claim = engine.claim_next_job(email_kind, company.pk)
    return job, claim, list(job.items.order_by("id"))


def test_the_outcome_and_the_next_mark_are_written_together(company, email_kind):
    job, claim, (first, second, third) = claimed_items(company, email_kind, 3)
    assert claim.mark(first.pk) == 1
    now = timezone.now()
    changes = {
        "status": Status.COMPLETED,
        "reason": "250 OK 'queued'",
        "processed_at": now,
        "next_attempt_at": None,
    }
    with CaptureQueriesContext(connection) as captured:
        outcome = claim.record_and_mark(first.pk, changes, now, second.pk)
    assert outcome == (True, True)
    assert len(captured) == (1 if ONE_STATEMENT else 2)
    for item in (first, second, third):
        item.refresh_from_db()
    assert (first.status, first.reason, first.processed_at) == (
        Status.COMPLETED,
        "250 OK 'queued'",
        now,
    )
    assert first.attempts == 1
    assert [(e["n"], e["status"]) for e in first.attempt_log] == [(1, "completed")]
    # The marked item has one more attempt and nothing else of the outcome.
    assert (second.status, second.attempts, second.reason, second.processed_at) == (
        Status.PROCESSING,
        1,
        "",
        None,
    )
    assert second.attempt_log == []
    assert (third.status, third.attempts) == (Status.PENDING, 0)


def test_a_lost_claim_writes_neither_row(company, email_kind):
    job, claim, (first, second) = claimed_items(company, email_kind, 2)
    assert claim.mark(first.pk) == 1
    BulkEmailJob.objects.filter(pk=job.pk).update(claim_token="another-run")
    changes = {"status": Status.COMPLETED, "reason": ""}
    assert claim.record_and_mark(first.pk, changes, job.created_at, second.pk) == (False, False)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempt_log) == (Status.PROCESSING, [])
    assert (second.status, second.attempts) == (Status.PENDING, 0)


def test_a_next_item_that_is_no_longer_pending_is_not_marked(company, email_kind):
    job, claim, (first, second) = claimed_items(company, email_kind, 2)
    assert claim.mark(first.pk) == 1
    job.items.filter(pk=second.pk).update(status=Status.CANCELLED)
    changes = {"status": Status.FAILED, "reason": "550 no such user"}
    assert claim.record_and_mark(first.pk, changes, job.created_at, second.pk) == (True, False)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.reason) == (Status.FAILED, "550 no such user")
    assert (second.status, second.attempts) == (Status.CANCELLED, 0)


def test_an_outcome_refused_is_told_apart_from_the_mark(company, email_kind):
    """The item was no longer `processing` (changed by hand): its outcome is not written.
    With RETURNING the next item's mark is reported as done (the engine gives it back);
    without, the mark is not even tried."""
    job, claim, (first, second) = claimed_items(company, email_kind, 2)
    assert claim.mark(first.pk) == 1
    job.items.filter(pk=first.pk).update(status=Status.PENDING)
    changes = {"status": Status.COMPLETED, "reason": ""}
    outcome = claim.record_and_mark(first.pk, changes, job.created_at, second.pk)
    assert outcome == (False, ONE_STATEMENT)
    first.refresh_from_db()
    assert (first.status, first.attempt_log) == (Status.PENDING, [])


@pytest.mark.django_db(transaction=True)
def test_an_item_changed_by_hand_mid_batch_stops_the_batch_and_spends_nothing_more(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, 10)

    def fail_by_hand(received):
        # An operator's manual SQL fails the item being delivered right now.
        if len(smtp_sink.messages) == 3:
            BulkEmailJob.objects.get(pk=job.pk).items.filter(
                recipient_email__in=received.rcpt_tos
            ).update(status=Status.FAILED, reason="failed by hand")

    summary = process_a_batch_while(email_kind, company, smtp_sink, fail_by_hand)
    assert len(smtp_sink.messages) == 3
    items = list(job.items.order_by("id"))
    assert [item.status for item in items[:3]] == [
        Status.COMPLETED,
        Status.COMPLETED,
        Status.FAILED,
    ]
    assert items[2].reason == "failed by hand"
    # The item after it was given back (or never marked): pending, no attempt spent.
    assert {(item.status, item.attempts) for item in items[3:]} == {(Status.PENDING, 0)}
    assert summary.items_succeeded == 2
