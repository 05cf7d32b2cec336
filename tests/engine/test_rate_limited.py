"""A handler that meets an empty shared bucket raises RateLimited: the engine gives the item
back without spending its attempt, stops the batch, and the job says what it waits for;
a short wait, not a pause."""

import logging
import time

import pytest

from bulkjobs import engine
from bulkjobs.kinds import BatchHandler, Outcome, RateLimited
from bulkjobs.models import Status
from emails.kind import EmailJobKind
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


class OneTokenProvider(BatchHandler):
    """A provider whose shared bucket (kept by the kind) holds one token for the run."""

    def __init__(self, kind):
        self.kind = kind

    def handle(self, item):
        if not self.kind.tokens:
            raise RateLimited("the Google Wallet rate limit (20/s)", self.kind.next_at)
        self.kind.tokens -= 1
        return Outcome.done()


class LimitedKind(EmailJobKind):
    def __init__(self, next_at):
        self.next_at = next_at
        self.tokens = 1

    def batch_handler(self, job, items):
        return OneTokenProvider(self)


def test_a_rate_limited_item_is_given_back_and_the_job_says_what_it_waits_for(
    company, settings, caplog
):
    settings.TIME_ZONE = "UTC"
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    next_at = time.time() + 30
    kind = LimitedKind(next_at)
    job = make_email_job(company, 3)

    with caplog.at_level(logging.INFO):
        # The slot opens after the run's budget: the run does not wait for it.
        summary = engine.run_once(kind, max_seconds=5)

    job.refresh_from_db()
    items = list(job.items.order_by("id").values_list("status", "attempts"))
    assert items == [(Status.COMPLETED, 1), (Status.PENDING, 0), (Status.PENDING, 0)]
    slot = time.strftime("%H:%M:%S", time.gmtime(next_at))
    assert job.reason == f"Waiting for the Google Wallet rate limit (20/s); next slot at {slot}"
    assert job.status == Status.PROCESSING and job.paused_at is None and job.claim_token is None
    assert summary.items_succeeded == 1 and not summary.paused
    assert "waiting: job" in str(summary)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    waits = [r for r in caplog.records if "Waiting for" in r.getMessage()]
    assert [r.levelno for r in waits] == [logging.INFO]


def test_the_waiting_reason_is_cleared_by_a_batch_that_is_not_limited(company, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    job = make_email_job(company, 3)
    engine.run_once(LimitedKind(time.time() + 30), max_seconds=5)
    job.refresh_from_db()
    assert job.reason.startswith("Waiting for ")

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    engine.run_once(EmailJobKind())
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert job.reason == "All 3 item(s) succeeded."


class RefillingProvider(OneTokenProvider):
    """Its bucket refills when the slot opens, as a shared bucket does."""

    def handle(self, item):
        if not self.kind.tokens and time.time() >= self.kind.next_at:
            self.kind.tokens = 5
        return super().handle(item)


class RefillingKind(LimitedKind):
    def batch_handler(self, job, items):
        return RefillingProvider(self)


def test_a_slot_that_opens_within_the_budget_is_waited_for_in_the_same_run(company, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    job = make_email_job(company, 3)

    summary = engine.run_once(RefillingKind(time.time() + 0.5), max_seconds=10)

    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert summary.items_succeeded == 3
    # Given back while waiting, never spent.
    assert set(job.items.values_list("attempts", flat=True)) == {1}
