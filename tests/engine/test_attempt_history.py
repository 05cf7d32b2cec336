"""Each attempt's outcome is kept (the item's attempt_log), and a retry leaves suppressed
addresses failed and the history intact."""

import secrets

import pytest

from bulkjobs import engine
from bulkjobs.models import ATTEMPT_LOG_SIZE, InterruptedPolicy, Status
from bulkjobs.ops.services import retry_failed_items
from emails.models import BulkEmailJob, EmailSuppression
from emails.unsubscribe import suppress
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_attempt(settings):
    """Give up after the first transient failure, so one run finishes the job."""
    settings.BULKJOBS = {**getattr(settings, "BULKJOBS", {}), "MAX_ATTEMPTS": 1}


def item_for(job, address):
    return job.items.get(recipient_email=address)


def test_retry_skips_suppressed_addresses_and_keeps_each_attempt(
    company, email_kind, smtp_sink, one_attempt
):
    job = make_email_job(
        company,
        ["reject@example.net", "tempfail@example.net", "tempfail@other.example", "ok@example.net"],
    )
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert (job.status, job.failed_items) == (Status.COMPLETED, 3)
    # The 550 put reject@ on the list; the other address's owner unsubscribes meanwhile
    # (stored lower-cased, matched whatever the item's case).
    suppress(company.pk, "TempFail@Other.Example", EmailSuppression.Reason.UNSUBSCRIBED)

    result = retry_failed_items(job)

    assert result.queued == 1
    assert {label: n for label, n in result.skipped.items() if n} == {
        "unsubscribed": 1,
        "hard bounce": 1,
    }
    assert result.skipped_text() == (
        "2 not retried because their addresses are on the suppression list "
        "(1 unsubscribed, 1 hard bounce)"
    )
    bounced = item_for(job, "reject@example.net")
    assert bounced.status == Status.FAILED and "550" in bounced.reason
    retried = item_for(job, "tempfail@example.net")
    assert (retried.status, retried.attempts, retried.reason) == (Status.PENDING, 1, "")
    [first] = retried.attempt_log
    assert (first["n"], first["status"]) == (1, Status.FAILED)
    assert first["reason"].startswith("Gave up after 1 attempts: Temporary failure at RCPT: 450")

    engine.run_once(email_kind)  # fails again: a second entry, the first one kept
    retried.refresh_from_db()
    assert retried.status == Status.FAILED and retried.attempts == 2
    assert [(e["n"], e["status"]) for e in retried.attempt_log] == [(1, "failed"), (2, "failed")]
    assert retried.attempt_log[0] == first
    job.refresh_from_db()
    assert (job.status, job.failed_items, job.succeeded_items) == (Status.COMPLETED, 3, 1)
    ok = item_for(job, "ok@example.net")
    assert [(e["n"], e["status"]) for e in ok.attempt_log] == [(1, Status.COMPLETED)]


def test_retry_with_only_suppressed_failures_queues_nothing_and_says_why(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, ["reject@example.net", "ok@example.net"])
    engine.run_once(email_kind)
    result = retry_failed_items(job)
    job.refresh_from_db()
    assert (result.queued, result.skipped_total) == (0, 1)
    assert "hard bounce" in result.skipped_text()
    assert job.status == Status.COMPLETED and job.failed_items == 1  # not reopened


def test_the_reasons_for_not_retrying_read_right_in_german(
    company, email_kind, smtp_sink, one_attempt
):
    from django.utils import translation

    job = make_email_job(company, ["reject@example.net", "tempfail@example.net"])
    engine.run_once(email_kind)
    suppress(company.pk, "tempfail@example.net", EmailSuppression.Reason.COMPLAINED)
    with translation.override("de"):
        result = retry_failed_items(job)
        text = result.skipped_text()
    # German nouns keep their capital inside the sentence (English labels are lower case).
    assert "(1 dauerhaft unzustellbar, 1 Spam-Beschwerde)" in text, text


def claimed(job):
    token = secrets.token_hex(16)
    BulkEmailJob.objects.filter(pk=job.pk).update(status=Status.PROCESSING, claim_token=token)
    return token


def test_the_log_is_bounded_and_keeps_the_first_attempt(company, email_kind):
    job = make_email_job(company, 1)
    item = job.items.get()
    token = claimed(job)
    items = email_kind.item_model.objects
    for n in range(1, 26):
        assert items.mark(item.pk, job.pk, token) == 1
        changes = {"status": Status.PENDING, "reason": f"error {n}"}
        assert items.record(item.pk, job.pk, token, changes) == 1
    item.refresh_from_db()
    assert item.attempts == 25
    assert len(item.attempt_log) == ATTEMPT_LOG_SIZE
    assert [e["n"] for e in item.attempt_log] == [1, *range(26 - ATTEMPT_LOG_SIZE + 1, 26)]
    assert item.attempt_log[0]["reason"] == "error 1"
    history = item.attempt_history
    assert history[1]["gap_before"] and not history[2]["gap_before"]
    assert history[-1]["outcome"] == "to retry" and history[-1]["at"] is not None


def test_a_fenced_out_record_writes_no_log_entry(company, email_kind):
    job = make_email_job(company, 1)
    item = job.items.get()
    token = claimed(job)
    items = email_kind.item_model.objects
    items.mark(item.pk, job.pk, token)
    assert items.record(item.pk, job.pk, "not-the-token", {"status": Status.FAILED}) == 0
    item.refresh_from_db()
    assert item.attempt_log == []


def test_an_interrupted_delivery_is_logged_as_an_attempt(company, email_kind):
    job = make_email_job(company, 2)
    first = job.items.order_by("id").first()
    token = claimed(job)
    items = email_kind.item_model.objects
    items.mark(first.pk, job.pk, token)  # a run died after this, mid-delivery
    settled = items.settle_interrupted(
        job.pk, token, InterruptedPolicy.FAIL, email_kind.interrupted_reason, job.created_at
    )
    assert settled == 1
    first.refresh_from_db()
    [entry] = first.attempt_log
    assert (entry["n"], entry["status"]) == (1, Status.FAILED)
    assert entry["reason"].startswith("Interrupted during delivery")
