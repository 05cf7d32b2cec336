"""A run that finds another database than the last run wrote to (a promoted standby, a
restored copy) releases every claim from before at once, and, where the old server's
commits were not on its standbys, fails as unknown what a batch may have sent in the
replication lag instead of sending it again.

The failover itself is played by the identity the last run recorded: a real server's
differs. A private primary and standby promoted under a worker are in
tests/processes/concurrency/test_failover.py.
"""

import logging

import pytest
from django.db import connection

from bulkjobs import engine
from bulkjobs.models import ProcessorRun, Status
from emails.kind import EmailJobKind
from emails.models import BulkEmailJob
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def server_database_only():
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("needs PostgreSQL or MariaDB: one SQLite file has no identity to change")


def a_run_wrote_to_another_server(marks_durable):
    """The email processor last ran against another server, with its replication then."""
    ProcessorRun.objects.update_or_create(
        kind="email",
        defaults={
            "last_started_at": BulkEmailJob.objects.first().created_at,
            "database_identity": "another-server/00000001",
            "marks_durable": marks_durable,
        },
    )


def a_batch_in_flight_on_the_old_server(company, email_kind, total):
    """A job whose batch was running when the old server went away: claimed, three items
    done, one processing; the standby saw no more."""
    job = make_email_job(company, total)
    claim = engine.claim_next_job(email_kind, company.pk)
    items = list(job.items.order_by("id"))
    for item in items[:3]:
        assert claim.mark(item.pk) == 1
        assert claim.record(item.pk, {"status": Status.COMPLETED, "reason": ""})
    assert claim.mark(items[3].pk) == 1
    return job, items


def test_after_an_asynchronous_failover_what_the_batch_may_have_sent_is_not_sent_again(
    company, email_kind, smtp_sink, caplog
):
    job, items = a_batch_in_flight_on_the_old_server(company, email_kind, 80)
    a_run_wrote_to_another_server(marks_durable=False)
    with caplog.at_level(logging.WARNING):
        summary = engine.run_once(email_kind)
    assert "The database changed since the last run" in caplog.text
    # The claim went at once (no 10-minute stuck rule); the item in flight is unknown, and
    # so are the batch size (50) of pending items after it, which the old batch may
    # have reached; the rest is sent.
    job.refresh_from_db()
    statuses = dict(job.items.values_list("pk", "status"))
    reasons = dict(job.items.values_list("pk", "reason"))
    assert [statuses[item.pk] for item in items[:3]] == [Status.COMPLETED] * 3
    assert reasons[items[3].pk] == EmailJobKind.interrupted_reason
    unknown = items[4:54]
    assert {statuses[item.pk] for item in unknown} == {Status.FAILED}
    assert {reasons[item.pk] for item in unknown} == {EmailJobKind.failover_reason}
    assert EmailJobKind.failover_reason.startswith("Delivery unknown: the database failed over")
    sent = {item.recipient_email for item in items[54:]}
    assert set(smtp_sink.recipients()) == sent and summary.items_succeeded == 26
    assert job.status == Status.COMPLETED and job.failed_items == 51


def test_after_a_synchronous_failover_only_the_item_in_flight_is_unknown(
    company, email_kind, smtp_sink, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    job, items = a_batch_in_flight_on_the_old_server(company, email_kind, 60)
    a_run_wrote_to_another_server(marks_durable=True)
    summary = engine.run_once(email_kind)
    job.refresh_from_db()
    # Every mark was on the standby before its email left: the pending items were not
    # sent, and are sent now.
    assert summary.items_succeeded == 56
    assert job.failed_items == 1
    assert job.items.get(pk=items[3].pk).reason == EmailJobKind.interrupted_reason
    assert len(smtp_sink.recipients()) == 56


def test_the_same_server_again_releases_nothing(company, email_kind, smtp_sink):
    job, _items = a_batch_in_flight_on_the_old_server(company, email_kind, 10)
    engine.run_once(email_kind)  # records this server's identity; the live claim stays
    job.refresh_from_db()
    assert job.claim_token is not None
    assert engine.run_once(email_kind).claims_released == 0
