"""A short stuck limit with a slow provider: the heartbeat follows the limit, so a healthy
batch longer than the limit is never judged stuck by the runs beside it.

At the scale of the measured problem (BULKJOBS_STUCK_MINUTES=0.2, a fixed 20 s heartbeat)
12.5% of the items of healthy batches failed as "Interrupted". Here the same, shrunk: a
3 s stuck limit, a mail server answering each message after 0.3 s, 20 emails in one batch
of about 6 s, and other runs rescuing every few tenths of a second meanwhile. Real time,
real threads, each run with its own database connection (transactional test).
"""

import threading
import time

import pytest

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails.models import BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_longer_than_the_stuck_limit_is_not_judged_stuck(
    company, smtp_sink, email_kind, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "STUCK_MINUTES": "0.05", "EMAIL_COMPANY_RATE": "0"}
    # Timeouts short enough for a 3 s stuck limit (the check wants 3 x the longest).
    settings.EMAIL_TIMEOUT = settings.APNS_TIMEOUT = settings.GOOGLE_WALLET_TIMEOUT = 1
    smtp_sink.delay = 0.3
    job = make_email_job(company, 20)

    summaries = []
    batch = threading.Thread(target=lambda: summaries.append(run_once(email_kind)))
    started = time.monotonic()
    batch.start()
    assert smtp_sink.wait_for(1) == 1  # the batch's run holds the job
    others = []
    while batch.is_alive():
        # Another processor's runs: each begins with the rescue, which releases claims
        # without a heartbeat for 3 s, and would then take the job over.
        others.append(run_once(email_kind))
        time.sleep(0.3)
    batch.join()
    took = time.monotonic() - started

    assert took > 3 * 1.5, "the batch must outlast the stuck limit"
    assert len(others) >= 5
    assert sum(s.claims_released for s in others) == 0
    assert sum(s.items_attempted for s in others) == 0
    [summary] = summaries
    assert (summary.batches, summary.items_succeeded) == (1, 20)
    items = BulkEmailJobItem.objects.filter(job=job)
    assert not items.filter(status=Status.FAILED).exists()
    assert items.filter(status=Status.COMPLETED).count() == 20
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 20
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.claim_token) == (Status.COMPLETED, 20, None)
