"""Rounds until the budget is spent, bounded by each company's pace (a shared bucket)."""

import pytest

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from cards.models import Company
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


def test_without_a_company_rate_one_run_delivers_several_batches_per_company(
    company, other_company, email_kind, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    jobs = [make_email_job(company, 20), make_email_job(other_company, 20)]
    summary = run_once(email_kind, batch_size=5)
    assert (summary.batches, summary.companies_served, summary.items_succeeded) == (8, 2, 40)
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Status.COMPLETED


def test_with_10_per_minute_a_company_gets_exactly_10_and_says_what_it_waits_for(
    company, email_kind, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "10/min"}
    job = make_email_job(company, 30)
    summary = run_once(email_kind)
    assert summary.items_succeeded == 10
    job.refresh_from_db()
    assert job.succeeded_items == 10 and job.status == Status.PROCESSING
    assert job.reason.startswith("Waiting for the company's pace (10/min); next slot at ")
    assert job.paused_at is None and job.claim_token is None
    waiting = job.items.filter(status=Status.PENDING)
    assert waiting.count() == 20 and set(waiting.values_list("attempts", flat=True)) == {0}

    # At once again: nothing more, nothing spent, still one line saying why; the company
    # is not even claimed (no claim and release for nothing, run after run).
    claimed_at = job.claimed_at
    summary = run_once(email_kind)
    assert summary.items_attempted == 0 and summary.companies_served == 0
    assert set(job.items.filter(status=Status.PENDING).values_list("attempts", flat=True)) == {0}
    job.refresh_from_db()
    assert job.claimed_at == claimed_at


def test_the_pace_is_per_company(company, email_kind, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "10/min"}
    make_email_job(company, 30)
    others = [
        make_email_job(Company.objects.create(name=f"Other {n}", slug=f"other-{n}"), 30)
        for n in range(2)
    ]
    summary = run_once(email_kind)
    assert summary.items_succeeded == 30
    for job in others:
        job.refresh_from_db()
        assert job.succeeded_items == 10


def test_a_mail_server_limit_shared_by_every_company_trims_the_batch(
    company, other_company, email_kind, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    settings.EMAIL_RATE_LIMIT = "15/h"
    first, second = make_email_job(company, 10), make_email_job(other_company, 10)
    summary = run_once(email_kind)
    assert summary.items_succeeded == 15
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.succeeded_items, second.succeeded_items) == (10, 5)
    assert second.reason.startswith(
        "Waiting for the mail server's rate limit (15/h); next slot at "
    )
