"""An honest queue (issue 20, part 2; bulkjobs.web.queue): every waiting job says what it
waits for and until when, on the dashboard, the job page, their polls and in the message
after creating a job, in the company's language and time zone. The queues come from real
engine runs (bulkjobs.engine.run_once) with the database's clock moved by database_time."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from bulkjobs import engine
from bulkjobs.models import ProcessorRun, Status
from cards.models import Company, Membership
from emails.models import BulkEmailJob
from tests.conftest import make_cards, make_email_job, make_user
from tests.web.conftest import client_for

pytestmark = pytest.mark.django_db

JSON = reverse("bulkjobs:jobs_json")
SEND = reverse("emails:send")
#: "around 14:05 UTC": a time of day, its zone named.
AROUND = r"\(around \d\d:\d\d [A-Z]{3,4}\)"


def email_rows(client):
    [section] = [k for k in client.get(JSON).json()["kinds"] if k["name"] == "email"]
    return {row["id"]: row for row in section["jobs"]}


def job_json(client, job):
    return client.get(reverse("bulkjobs:job_json", args=["email", job.pk]))


@pytest.fixture
def newsletter(company, email_kind, database_time):
    """The issue's newsletter to 5,000, running at the default pace (50 a minute) on
    cron's schedule: two runs a minute apart (the second measures the interval), the
    database's clock now at the second run."""
    job = make_email_job(company, 5000, subject="Newsletter Dezember")
    engine.run_once(email_kind)
    database_time.shift(timedelta(minutes=1))
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert job.succeeded_items == 100
    return job


def send_to_one(client, card, subject="Dringend: Ihr Termin morgen"):
    return client.post(
        SEND,
        {
            "card_mode": "selected",
            "cards": [card.pk],
            "recipient_mode": "list",
            "recipients_text": "termin@example.net",
            "consent": "on",
            "subject": subject,
            "message": "",
            "action": "start",
        },
        follow=True,
    )


def test_a_small_job_created_behind_a_long_one_says_behind_which_and_when(
    admin_client_, company, newsletter, email_kind, smtp_sink, database_time
):
    card = make_cards(company, 1, prefix="Urgent")[0]
    response = send_to_one(admin_client_, card)
    urgent = BulkEmailJob.objects.exclude(pk=newsletter.pk).get()
    page = response.content.decode()
    # The message after creating it: behind the job whose batch holds the company's slot,
    # starting with the next one (the next cron run, about a minute after the last).
    assert re.search(
        rf"Email job #{urgent.pk} created with 1 recipient\. Behind #{newsletter.pk} "
        rf"“Newsletter Dezember”: starts in (about 1 min|less than a minute) {AROUND}\.",
        page,
    ), page
    # The dashboard row and the job page say the same (read at one moment: "in about 1
    # min" may become "in less than a minute" between two reads).
    with time_machine.travel(timezone.now(), tick=False):
        row = email_rows(admin_client_)[urgent.pk]
        summary = job_json(admin_client_, urgent).json()["parts"]["summary"]
    assert row["waiting_code"] == "behind" and row["behind"] == newsletter.pk
    assert row["waiting"].startswith(f"Behind #{newsletter.pk} “Newsletter Dezember”: starts in")
    assert row["starts_at"] is not None
    assert row["waiting"] in row["html"]
    assert row["waiting"] in summary

    # The next run, a minute later, delivers it, and its row no longer waits.
    database_time.shift(timedelta(minutes=1))
    engine.run_once(email_kind)
    urgent.refresh_from_db()
    assert urgent.status == Status.COMPLETED
    assert email_rows(admin_client_)[urgent.pk]["waiting"] == ""


def test_the_long_jobs_time_left_grows_by_one_batch_only(
    admin_client_, company, newsletter, database_time
):
    before = email_rows(admin_client_)[newsletter.pk]["seconds_left"]
    # 4,900 emails at 50 a minute.
    assert before == 98 * 60
    make_email_job(company, ["termin@example.net"], subject="Dringend")
    after = email_rows(admin_client_)[newsletter.pk]["seconds_left"]
    # The small job takes one batch slot of the company's pace: one minute.
    assert after - before == 60


def test_jobs_never_served_wait_behind_each_other_oldest_first(admin_client_, company, settings):
    first = make_email_job(company, 3, subject="First")
    second = make_email_job(company, 3, subject="Second")
    third = make_email_job(company, 3, subject="Third")
    rows = email_rows(admin_client_)
    # No processor has run yet: nothing to measure a time by.
    assert rows[first.pk]["waiting"] == "Starts on the next processor run."
    assert rows[second.pk]["waiting"].startswith(f"Behind #{first.pk} “First”: starts in")
    assert rows[third.pk]["waiting"].startswith(
        f"Behind #{second.pk} “Second” and 1 other job: starts in"
    )


def test_a_job_between_batches_waits_for_its_companys_pace(
    admin_client_, company, email_kind, database_time
):
    job = make_email_job(company, 120, subject="Big")
    engine.run_once(email_kind)
    row = email_rows(admin_client_)[job.pk]
    # Its own batch spent the minute's 50; the next token frees 1.2 s later, and no run
    # interval was measured yet.
    assert row["waiting_code"] == "pace"
    assert re.fullmatch(
        rf"Waiting for the company's pace \(50 per minute\): next batch in less than a minute "
        rf"{AROUND}\.",
        row["waiting"],
    ), row["waiting"]


def test_a_job_whose_items_back_off_says_when_it_retries(
    admin_client_, company, email_kind, database_time
):
    job = make_email_job(company, 2, subject="Flaky")
    engine.run_once(email_kind)  # starts it (and completes it: the outbox accepts all)
    retry = make_email_job(company, 2, subject="Retrying")
    BulkEmailJob.objects.filter(pk=retry.pk).update(status=Status.PROCESSING)
    retry.items.update(next_attempt_at=database_time.now() + timedelta(minutes=5), attempts=1)
    row = email_rows(admin_client_)[retry.pk]
    assert row["waiting_code"] == "retry"
    assert re.fullmatch(
        rf"Waiting to retry: next attempt in about [45] min {AROUND}\.", row["waiting"]
    ), row["waiting"]
    job.refresh_from_db()
    assert job.status == Status.COMPLETED


def test_a_job_waiting_for_its_provider_keeps_saying_why_itself(
    admin_client_, company, database_time
):
    job = make_email_job(company, 3, subject="Paused")
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING,
        paused_at=database_time.now(),
        reason="Paused, will retry next run: the mail server refused the login",
    )
    later = make_email_job(company, 1, subject="Later")
    rows = email_rows(admin_client_)
    assert rows[job.pk]["waiting"] == ""
    # Waiting for the mail server (a provider pause), not "Paused" (a person's pause).
    assert rows[job.pk]["reason"].startswith("Waiting since")
    # A job waiting for its provider probes its provider in its turn, but nobody waits behind it.
    assert not rows[later.pk]["waiting"].startswith(f"Behind #{job.pk}")


def test_the_job_pages_poll_follows_the_queue(admin_client_, company, email_kind):
    first = make_email_job(company, 3, subject="First")
    second = make_email_job(company, 3, subject="Second")
    response = job_json(admin_client_, second)
    assert f"Behind #{first.pk}" in response.json()["job"]["waiting"]
    etag = response["ETag"]
    assert job_json(admin_client_, second).status_code == 200
    unchanged = admin_client_.get(
        reverse("bulkjobs:job_json", args=["email", second.pk]),
        headers={"if-none-match": etag},
    )
    assert unchanged.status_code == 304
    # The job ahead is served; the waiting job's own row did not change, its queue did.
    claim = engine.claim_job(email_kind, company.pk)
    assert claim.job.pk == first.pk
    claim.release()
    changed = admin_client_.get(
        reverse("bulkjobs:job_json", args=["email", second.pk]),
        headers={"if-none-match": etag},
    )
    assert changed.status_code == 200
    # Served once, the first job goes behind the second, which is next in turn.
    assert changed.json()["job"]["waiting"] == "Starts on the next processor run."


def test_a_german_company_reads_its_queue_in_german_with_its_zone(email_kind, database_time):
    company = Company.objects.create(
        name="Beispiel GmbH", slug="beispiel", language="de", time_zone="Europe/Berlin"
    )
    client = client_for(make_user("chefin", company, Membership.Role.ADMIN))
    newsletter = make_email_job(company, 5000, subject="Newsletter Dezember")
    engine.run_once(email_kind)
    database_time.shift(timedelta(minutes=1))
    engine.run_once(email_kind)
    card = make_cards(company, 1, prefix="Termin")[0]
    page = send_to_one(client, card).content.decode()
    urgent = BulkEmailJob.objects.exclude(pk=newsletter.pk).get()
    assert re.search(
        rf"E-Mail-Auftrag #{urgent.pk} mit 1 Empfänger angelegt\. Hinter #{newsletter.pk} "
        r"„Newsletter Dezember“: beginnt in (etwa 1 Min\.|weniger als einer Minute) "
        r"\(gegen \d\d:\d\d CES?T\)\.",
        page,
    ), page
    row = email_rows(client)[urgent.pk]
    assert row["waiting"].startswith(f"Hinter #{newsletter.pk} „Newsletter Dezember“: beginnt")


def test_a_provider_limit_is_named_with_its_rate(admin_client_, company, settings):
    from bulkjobs.engine import ratelimit
    from bulkjobs.engine.ratelimit import parse_rate

    settings.EMAIL_RATE_LIMIT = "1/h"
    ratelimit.take("email:mail-server", parse_rate("1/h"), 1)
    job = make_email_job(company, 2, subject="Limited")
    row = email_rows(admin_client_)[job.pk]
    assert row["waiting_code"] == "limit"
    assert re.fullmatch(
        r"Waiting for the provider's rate limit \(1 per hour\): starts in about (1 h 0|59) min "
        r"\(around \d\d:\d\d [A-Z]{3,4}\)\.",
        row["waiting"],
    ), row["waiting"]


def test_a_job_says_when_processing_has_stopped(admin_client_, company):
    ProcessorRun.objects.create(
        kind="email",
        last_started_at=timezone.now() - timedelta(minutes=10),
        interval_seconds=60,
    )
    job = make_email_job(company, 2, subject="Stuck in the queue")
    row = email_rows(admin_client_)[job.pk]
    assert (row["waiting_code"], row["waiting"]) == (
        "stopped",
        "Waiting for background processing to run again.",
    )
