"""A batch's database work is bounded and does not grow with the size of the database."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bulkjobs.engine import locks, run_once
from cards.models import Company
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

# Per item: one statement that records its outcome and marks the next item processing
# (two on MariaDB/MySQL, which have no UPDATE ... RETURNING); a lane's first item needs a
# mark of its own. Per run and batch: a fixed overhead (the database's clock read once per
# run; the rate limit's tokens are taken once per batch, and checked once per further
# round; the alerts' query for jobs needing one at the end of a run that served a batch;
# the claim reads the company's next jobs in turn, then which of them have work now).
PER_ITEM = 2 if connection.vendor == "mysql" else 1
PER_LANE = 1
OVERHEAD = 28


def queries_for_one_batch(email_kind):
    with CaptureQueriesContext(connection) as captured:
        summary = run_once(email_kind, company_ids=[Company.objects.get(slug="acme").pk])
    assert summary.items_succeeded == 50
    return len(captured)


def test_a_batch_of_50_uses_a_bounded_number_of_queries(
    company, email_kind, django_assert_max_num_queries
):
    make_email_job(company, 60)
    # Once per connection, not per run: the lock and statement timeouts (none on SQLite).
    locks.apply_session_timeouts()
    with django_assert_max_num_queries(PER_ITEM * 50 + PER_LANE + OVERHEAD):
        run_once(email_kind)


def test_query_count_does_not_depend_on_how_much_else_is_stored(company, email_kind, database_time):
    make_email_job(company, 200)  # big enough that no batch completes it
    # The first batch ever also creates the processor record and the company's bucket.
    queries_for_one_batch(email_kind)
    # Each later batch a minute after the last, when the company's pace (50/min) allows it.
    database_time.shift(timedelta(minutes=1))
    small = queries_for_one_batch(email_kind)
    database_time.shift(timedelta(minutes=1))
    # Many other jobs and items in the database change nothing.
    for n in range(15):
        other = Company.objects.create(name=f"Other {n}", slug=f"other-{n}")
        make_email_job(other, 200)
    make_email_job(company, 60)  # queued behind the first job
    make_email_job(company, 60)
    big = queries_for_one_batch(email_kind)
    assert big == small


def test_an_idle_run_costs_a_handful_of_queries(db, email_kind, django_assert_max_num_queries):
    run_once(email_kind)  # the first run ever creates the processor record
    # Read the database's clock, note the run, rescue, companies with work, note its end;
    # the alerts cost an idle run nothing (bulkjobs/ops/alerts.py).
    with django_assert_max_num_queries(7):
        summary = run_once(email_kind)
    assert summary.companies_served == 0
