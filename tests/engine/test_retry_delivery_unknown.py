"""Items whose delivery is unknown (the mail server may have the email) are never retried by
"Retry failed items": they stay failed and are counted, and a person retries them only as
a group of their own (ONLY_UNKNOWN), or with `manage.py retry_job --include-unknown`.
Suppressed addresses stay failed either way. Wallet items are redone, never "unknown"."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from bulkjobs import engine
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from bulkjobs.ops.services import (
    LEAVE_UNKNOWN,
    ONLY_UNKNOWN,
    WITH_UNKNOWN,
    retry_failed_items,
)
from emails import esp
from emails.kind import DELIVERY_UNKNOWN_REASON
from emails.models import EmailSuppression
from emails.unsubscribe import suppress
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

# What an item interrupted mid-delivery said before "Retry items whose delivery is
# unknown" existed: items failed back then are recognised all the same.
OLD_INTERRUPTED_REASON = (
    "Interrupted during delivery; delivery is unknown and it was not resent. "
    "Use 'Retry failed items' to send it again."
)
UNKNOWN = ["accept-then-drop@example.net", "interrupted@example.net", "old@example.net"]


@pytest.fixture
def finished_job(company, email_kind, smtp_sink, settings):
    """A completed job with every kind of failure: delivery unknown three ways (the server
    dropped the connection after the final ".", an item a dead run left mid-delivery, and
    one such item failed by an older release), a hard bounce (suppressed) and a transient
    failure that used up its attempts; and one success."""
    settings.BULKJOBS = {**settings.BULKJOBS, "MAX_ATTEMPTS": 1}
    job = make_email_job(
        company, [*UNKNOWN, "reject@example.net", "tempfail@example.net", "ok@x.org"]
    )
    engine.run_once(email_kind)
    for address, reason in [
        ("interrupted@example.net", email_kind.interrupted_reason),
        ("old@example.net", OLD_INTERRUPTED_REASON),
    ]:
        job.items.filter(recipient_email=address).update(status=Status.FAILED, reason=reason)
    engine.recount(email_kind, job.pk)
    job.refresh_from_db()
    assert (job.status, job.failed_items, job.succeeded_items) == (Status.COMPLETED, 5, 1)
    return job


def statuses(job):
    return dict(job.items.values_list("recipient_email", "status"))


def test_the_email_kinds_unknown_reasons_are_recognised(email_kind):
    """Every reason the email kind writes for an unknown delivery starts with one of the
    prefixes "Retry failed items" recognises; no other reason does."""
    reasons = [
        DELIVERY_UNKNOWN_REASON.format(detail="no reply within EMAIL_TIMEOUT = 20 s"),
        esp.DELIVERY_UNKNOWN_REASON.format(esp="Postmark", detail="ReadTimeout"),
        email_kind.interrupted_reason,
        OLD_INTERRUPTED_REASON,
    ]
    for reason in reasons:
        assert reason.startswith(email_kind.unknown_outcome_reasons), reason
    for reason in ["Rejected at RCPT: 550 5.1.1 No such user", "Gave up after 5 attempts: x"]:
        assert not reason.startswith(email_kind.unknown_outcome_reasons), reason


def test_retry_leaves_items_whose_delivery_is_unknown_failed_and_says_so(finished_job):
    result = retry_failed_items(finished_job)

    assert (result.queued, result.unknown_left, result.unknown_queued) == (1, 3, 0)
    assert result.left_failed_text() == (
        "1 not retried because their addresses are on the suppression list (1 hard bounce); "
        "3 items whose delivery is unknown were not retried"
    )
    assert statuses(finished_job) == {
        **dict.fromkeys(UNKNOWN, Status.FAILED),
        "reject@example.net": Status.FAILED,
        "tempfail@example.net": Status.PENDING,
        "ok@x.org": Status.COMPLETED,
    }
    finished_job.refresh_from_db()
    assert (finished_job.status, finished_job.failed_items) == (Status.PENDING, 4)


def test_retry_with_only_unknown_failures_queues_nothing(finished_job):
    finished_job.items.filter(
        recipient_email__in=["reject@example.net", "tempfail@example.net"]
    ).update(status=Status.COMPLETED)
    result = retry_failed_items(finished_job)
    assert (result.queued, result.unknown_left) == (0, 3)
    assert result.unknown_text() == "3 items whose delivery is unknown were not retried"
    finished_job.refresh_from_db()
    assert finished_job.status == Status.COMPLETED  # not reopened


def test_a_confirmed_retry_queues_only_the_items_whose_delivery_is_unknown(
    finished_job, email_kind, smtp_sink
):
    # The address of one of them unsubscribed meanwhile: it stays failed, counted as such.
    suppress(finished_job.company_id, "old@example.net", EmailSuppression.Reason.UNSUBSCRIBED)

    result = retry_failed_items(finished_job, by="ada", unknown=ONLY_UNKNOWN)

    assert (result.queued, result.unknown_queued, result.unknown_left) == (2, 2, 0)
    assert result.skipped_text() == (
        "1 not retried because their addresses are on the suppression list (1 unsubscribed)"
    )
    assert statuses(finished_job) == {
        "accept-then-drop@example.net": Status.PENDING,
        "interrupted@example.net": Status.PENDING,
        "old@example.net": Status.FAILED,
        "reject@example.net": Status.FAILED,
        "tempfail@example.net": Status.FAILED,  # the other group: not touched
        "ok@x.org": Status.COMPLETED,
    }
    smtp_sink.messages.clear()
    engine.run_once(email_kind)
    assert sorted(smtp_sink.recipients()) == [
        "accept-then-drop@example.net",
        "interrupted@example.net",
    ]

    # Nothing of that group is left: a second confirmation finds nothing to do.
    finished_job.items.filter(recipient_email="accept-then-drop@example.net").update(
        status=Status.COMPLETED
    )
    again = retry_failed_items(finished_job, unknown=ONLY_UNKNOWN)
    assert again.queued == 0


def test_with_unknown_queues_both_groups_but_never_a_suppressed_address(finished_job):
    result = retry_failed_items(finished_job, unknown=WITH_UNKNOWN)
    assert (result.queued, result.unknown_queued, result.skipped_total) == (4, 3, 1)
    assert statuses(finished_job)["reject@example.net"] == Status.FAILED


def test_a_running_job_is_refused_in_every_mode(company):
    job = make_email_job(company, ["a@example.net"])
    for mode in (LEAVE_UNKNOWN, ONLY_UNKNOWN, WITH_UNKNOWN):
        with pytest.raises(ValueError, match="only completed or failed jobs"):
            retry_failed_items(job, unknown=mode)
    with pytest.raises(ValueError, match="unknown must be one of"):
        retry_failed_items(job, unknown=True)


def test_wallet_items_are_never_unknown(company):
    kind = get_kind("wallet")
    assert kind.unknown_outcome() is None
    job = kind.job_model.objects.create(
        company=company, total_items=2, status=Status.FAILED, failed_items=2
    )
    kind.item_model.objects.bulk_create(
        kind.item_model(job=job, status=Status.FAILED, reason="Interrupted; done again")
        for _ in range(2)
    )
    assert retry_failed_items(job, unknown=ONLY_UNKNOWN).queued == 0
    result = retry_failed_items(job)
    assert (result.queued, result.unknown_left) == (2, 0)


def test_the_unknown_count_reads_right_in_german(finished_job):
    with translation.override("de"):
        text = retry_failed_items(finished_job).left_failed_text()
    assert "3 Einträge mit unbekannter Zustellung wurden nicht wiederholt" in text, text


# --- manage.py retry_job ---------------------------------------------------------------


def retry_job(*args):
    out = StringIO()
    call_command("retry_job", *args, stdout=out)
    return out.getvalue().strip()


def test_retry_job_leaves_unknown_items_unless_told(finished_job):
    assert retry_job("email", str(finished_job.pk)) == (
        f"Job {finished_job.pk}: 1 failed item(s) queued again; 1 not retried because their "
        "addresses are on the suppression list (1 hard bounce); 3 items whose delivery is "
        "unknown were not retried (--include-unknown retries them too; they may be sent twice)."
    )
    assert statuses(finished_job)["accept-then-drop@example.net"] == Status.FAILED


def test_retry_job_include_unknown_retries_them_and_says_so(finished_job):
    out = retry_job("email", str(finished_job.pk), "--include-unknown")
    assert out == (
        f"Job {finished_job.pk}: 4 failed item(s) queued again, 3 of them with delivery unknown "
        "(they may be sent twice); 1 not retried because their addresses are on the "
        "suppression list (1 hard bounce)."
    )
    assert set(
        finished_job.items.filter(status=Status.PENDING).values_list("recipient_email", flat=True)
    ) == {
        *UNKNOWN,
        "tempfail@example.net",
    }


def test_retry_job_with_only_unknown_failures_says_how_to_retry_them(finished_job):
    finished_job.items.filter(
        recipient_email__in=["reject@example.net", "tempfail@example.net"]
    ).update(status=Status.COMPLETED)
    assert retry_job("email", str(finished_job.pk)) == (
        f"Job {finished_job.pk}: nothing to retry; 3 items whose delivery is unknown were not "
        "retried (--include-unknown retries them too; they may be sent twice)."
    )


def test_retry_job_refuses_a_running_job(company):
    job = make_email_job(company, ["a@example.net"])
    with pytest.raises(CommandError, match="only completed or failed jobs"):
        retry_job("email", str(job.pk), "--include-unknown")
