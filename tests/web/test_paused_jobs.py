"""A job paused for its provider shows on /background-jobs as waiting for it, not as
running, and not as "Paused" (a person's pause, tests/web/test_pause_resume.py)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from tests.conftest import make_email_job
from tests.smtp_sink import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def mail_server_down(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""


def email_row(client, job):
    data = client.get(reverse("bulkjobs:jobs_json")).json()
    section = next(kind for kind in data["kinds"] if kind["name"] == "email")
    return next(row for row in section["jobs"] if row["id"] == job.pk)


def test_a_paused_job_shows_since_when_and_why(
    admin_client_, company, email_kind, mail_server_down, settings, database_time
):
    settings.TIME_ZONE = "UTC"
    job = make_email_job(company, 3)
    for _minute in range(20):  # cron runs every minute; the server stays down
        run_once(email_kind)
        database_time.shift(timedelta(minutes=1))
    job.refresh_from_db()
    since = job.paused_at  # the first run's, 20 minutes ago
    assert timedelta(minutes=20) <= database_time.now() - since < timedelta(minutes=21)
    row = email_row(admin_client_, job)
    page = admin_client_.get(reverse("bulkjobs:dashboard")).content.decode()
    assert row["status"] == Status.PROCESSING
    assert row["paused"] is True and row["status_label"] == "Waiting for the mail server"
    assert row["paused_since"].startswith(since.strftime("%Y-%m-%dT%H:%M"))
    # The time alone on the day of the pause (a test run just after midnight sees a date).
    same_day = since.date() == timezone.now().date()
    when = since.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")
    expected = f"Waiting since {when} UTC: The mail server cannot be reached"
    assert row["reason"].startswith(expected)
    assert row["time_left"] == ""
    assert "badge-waiting" in row["html"] and f"Waiting since {when} UTC" in row["html"]
    assert expected in page


def test_a_pause_from_another_day_shows_its_date(
    admin_client_, company, email_kind, mail_server_down, settings, database_time
):
    settings.TIME_ZONE = "UTC"
    job = make_email_job(company, 1)
    run_once(email_kind)
    database_time.shift(timedelta(days=1, hours=1))  # the page is read the next day
    job.refresh_from_db()
    row = email_row(admin_client_, job)
    assert row["reason"].startswith(f"Waiting since {job.paused_at:%Y-%m-%d %H:%M} UTC: ")


def test_a_running_job_is_not_shown_as_paused(admin_client_, company, email_kind, smtp_sink):
    job = make_email_job(company, 60)
    run_once(email_kind)
    row = email_row(admin_client_, job)
    assert row["paused"] is False and row["paused_since"] is None
    assert row["status_label"] == "Processing" and "badge-processing" in row["html"]
