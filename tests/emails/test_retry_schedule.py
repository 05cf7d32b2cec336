"""An MTA's patience: temporary refusals are retried on a schedule spanning a day, without
holding the company's next job and without expiring the job for inactivity, and the job
page says how many wait and when the next retry is.

Time passes as the engine sees it (tests/conftest.py's DatabaseTime); the sink's
greylist and full mailbox go by the same passing time (`elapsed`), counted by the test.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from bulkjobs import conf
from bulkjobs.engine import run_once
from bulkjobs.models import Status
from cards.locale import format_zoned
from emails.models import EmailSuppression
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

DEFAULT_WAITS = [60, 300, 900, 1800, 3600, 7200, 10800, 14400, 21600, 28800]


class Clock:
    """The test's count of the time that passed, moved with the database's."""

    def __init__(self, database_time):
        self.database_time = database_time
        self.elapsed = timedelta(0)

    def advance(self, delta):
        self.database_time.shift(delta)
        self.elapsed += delta


def refuse_until(address, reply, clock, lasting):
    """A sink rule: RCPT to `address` is refused with `reply` until `lasting` has passed
    since it was first seen (a greylist; a mailbox full for a while)."""
    first_seen = []

    def rule(rcpt):
        if rcpt != address:
            return None
        if not first_seen:
            first_seen.append(clock.elapsed)
        return reply if clock.elapsed - first_seen[0] < lasting else None

    return rule


def live_through(item, clock, email_kind, until, step=timedelta(minutes=20)):
    """Runs every `step` (and at each retry time) until the item is finished or `until`
    has passed; returns the times at which it was attempted."""
    attempts_at = []
    while clock.elapsed < until:
        item.refresh_from_db()
        if item.status != Status.PENDING:
            break
        now = clock.database_time.now()
        due_in = item.next_attempt_at - now if item.next_attempt_at else timedelta(0)
        clock.advance(max(timedelta(seconds=1), min(step, due_in + timedelta(seconds=1))))
        before = item.attempts
        summary = run_once(email_kind)
        assert summary.jobs_expired == 0
        item.refresh_from_db()
        if item.attempts > before:
            attempts_at.append(clock.elapsed)
    return attempts_at


@pytest.fixture
def clock(database_time, settings):
    # Runs every 20 minutes: no gap is forgiven as a time no processor ran, so the
    # 30-minute inactivity rule applies in full while the items wait.
    settings.BULKJOBS = {**settings.BULKJOBS, "RUN_GAP_SECONDS": 86400 * 3}
    return Clock(database_time)


def test_the_default_schedule_spans_a_day():
    waits = conf.get("EMAIL_RETRY_SCHEDULE")
    assert list(waits) == DEFAULT_WAITS
    assert sum(waits) >= 24 * 3600


@pytest.mark.parametrize(
    ("value", "waits"),
    [("30s, 2m,1.5h", (30.0, 120.0, 5400.0)), ("90", (90.0,)), ("2d", (172800.0,))],
)
def test_a_schedule_is_read_from_the_setting(settings, value, waits):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_RETRY_SCHEDULE": value}
    assert conf.get("EMAIL_RETRY_SCHEDULE") == waits


@pytest.mark.parametrize("value", ["", "5x", "-1m", "1m,,0"])
def test_a_bad_schedule_names_the_variable(settings, value):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_RETRY_SCHEDULE": value}
    with pytest.raises(ImproperlyConfigured, match="BULKJOBS_EMAIL_RETRY_SCHEDULE"):
        conf.get("EMAIL_RETRY_SCHEDULE")


def test_a_300_second_greylist_is_passed_on_the_third_attempt(
    company, email_kind, smtp_sink, clock
):
    address = "grey@example.org"
    reply = "450 4.7.1 <grey@example.org>: Recipient address rejected: Greylisted, see 300 s"
    smtp_sink.rcpt_rule = refuse_until(address, reply, clock, timedelta(seconds=300))
    job = make_email_job(company, [address])
    run_once(email_kind)
    item = job.items.get()
    assert (item.status, item.reason_code) == (Status.PENDING, "smtp_temporary")
    attempts_at = live_through(item, clock, email_kind, until=timedelta(hours=1))
    assert item.status == Status.COMPLETED and item.attempts == 3
    # 1 minute, then 5 more (each wait up to a tenth longer): past the 300 s.
    assert timedelta(seconds=360) <= attempts_at[-1] <= timedelta(seconds=400)
    assert smtp_sink.arrivals(address) == 1


def test_a_mailbox_full_for_20_hours_is_delivered_and_the_job_never_expires(
    company, email_kind, smtp_sink, clock
):
    address = "full@example.org"
    reply = "452 4.2.2 <full@example.org>: Mailbox full"
    smtp_sink.rcpt_rule = refuse_until(address, reply, clock, timedelta(hours=20))
    job = make_email_job(company, [address, "ok@example.org"])
    run_once(email_kind)
    item = job.items.get(recipient_email=address)
    attempts_at = live_through(item, clock, email_kind, until=timedelta(hours=30))
    assert item.status == Status.COMPLETED
    assert timedelta(hours=20) <= attempts_at[-1] <= timedelta(hours=27)
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.failed_items) == (Status.COMPLETED, 2, 0)
    assert not EmailSuppression.objects.exists()


def test_a_mailbox_full_for_good_fails_after_a_day_and_stays_off_the_list(
    company, email_kind, smtp_sink, clock
):
    address = "full@example.org"
    smtp_sink.rcpt_rule = refuse_until(address, "452 4.2.2 Mailbox full", clock, timedelta(days=9))
    job = make_email_job(company, [address])
    run_once(email_kind)
    item = job.items.get()
    attempts_at = live_through(item, clock, email_kind, until=timedelta(days=2))
    assert item.status == Status.FAILED and item.attempts == len(DEFAULT_WAITS) + 1
    assert item.reason.startswith("Gave up after 11 attempts: Temporary failure at RCPT: 452")
    assert item.provider_reply == "452 4.2.2 Mailbox full"
    assert attempts_at[-1] >= timedelta(hours=24)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.failed_items == 1
    assert "Expired" not in job.reason
    assert not EmailSuppression.objects.exists()


def test_max_attempts_when_set_caps_the_schedule(company, email_kind, smtp_sink, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "MAX_ATTEMPTS": 1}
    job = make_email_job(company, ["tempfail@example.org"])
    run_once(email_kind)
    item = job.items.get()
    assert item.status == Status.FAILED and item.reason.startswith("Gave up after 1 attempts")


def test_an_item_waiting_for_its_retry_holds_neither_the_company_nor_its_page(
    company, email_kind, smtp_sink, clock, client, owner
):
    first = make_email_job(company, ["tempfail@example.org", "tempfail+2@example.org"])
    run_once(email_kind)
    second = make_email_job(company, ["ok@example.org"])
    run_once(email_kind)
    second.refresh_from_db()
    assert second.status == Status.COMPLETED
    first.refresh_from_db()
    assert first.status == Status.PROCESSING

    # The job page says how many wait and when the next one is tried, in the company's
    # zone and language.
    client.force_login(owner)
    url = reverse("bulkjobs:job_detail", args=["email", first.pk])
    next_at = min(first.items.values_list("next_attempt_at", flat=True))
    page = client.get(url).content.decode()
    with timezone.override(company.time_zone):
        expected = format_zoned(next_at, "H:i")
    assert f"2 to retry, next at {expected}" in page
    company.language = "de"
    company.save()
    page = client.get(url).content.decode()
    assert "2 erneut zu versuchen, nächster Versuch um" in page
