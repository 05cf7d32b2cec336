"""Fixtures for the web app tests: signed-in clients per persona, email jobs to look at
(the browser tests in tests/browser/ use these helpers too)."""

import pytest
from django.test import Client

from bulkjobs.models import Status
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job


def client_for(user, enforce_csrf=False):
    client = Client(enforce_csrf_checks=enforce_csrf)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def admin_client_(owner):
    """Acme's company admin (the `owner` persona), signed in."""
    return client_for(owner)


@pytest.fixture
def member_client(member):
    return client_for(member)


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


@pytest.fixture
def anon_client(db):
    return Client()


@pytest.fixture
def cards(company):
    return make_cards(company, 3)


def fail_items(job, count, reason="Rejected at RCPT: 550 no such user"):
    """Mark the job's first `count` items failed and the rest completed; finish the job."""
    items = list(BulkEmailJobItem.objects.filter(job=job).order_by("id"))
    for n, item in enumerate(items):
        failed = n < count
        BulkEmailJobItem.objects.filter(pk=item.pk).update(
            status=Status.FAILED if failed else Status.COMPLETED,
            reason=reason if failed else "",
            attempts=3 if failed else 1,
        )
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.FAILED if count == len(items) else Status.COMPLETED,
        succeeded_items=len(items) - count,
        failed_items=count,
    )
    job.refresh_from_db()
    return job


@pytest.fixture
def job(company, cards, owner):
    return make_email_job(company, cards=cards, created_by=owner)


@pytest.fixture
def other_job(other_company, outsider):
    return make_email_job(
        other_company, cards=make_cards(other_company, 2, prefix="Other"), created_by=outsider
    )
