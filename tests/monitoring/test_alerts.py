"""Alerts: each event emailed once, to the job's creator and its company's admins only;
stopped processors to the operators once per outage; the daily digest; the webhook.

Jobs fail, expire and pause for real (a real SMTP sink refusing addresses, a wallet job
with no platform configured); the alerts travel through the same sink.
"""

import json
import logging
import threading
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import AlertEvent, ProcessorRun, Status
from bulkjobs.ops import alerts
from cards.models import Membership
from tests.conftest import make_email_job, make_user
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADMINS = [("Ops", "ops@platform.test")]


@pytest.fixture
def people(company, other_company):
    """Acme's admin, a member who creates jobs, a bystander member; Globex's admin."""
    return {
        "admin": make_user("acme-admin", company, Membership.Role.ADMIN, email="admin@acme.test"),
        "creator": make_user("creator", company, email="creator@acme.test"),
        "bystander": make_user("bystander", company, email="bystander@acme.test"),
        "outsider": make_user(
            "globex-admin", other_company, Membership.Role.ADMIN, email="admin@globex.test"
        ),
    }


@pytest.fixture
def alert_settings(settings, smtp_sink):
    settings.ADMINS = ADMINS
    settings.BULKJOBS_ALERTS = True
    settings.BULKJOBS_ALERT_DIGEST = False
    settings.BULKJOBS_ALERT_WEBHOOK_URL = ""
    settings.SITE_URL = "https://cards.example.com"
    return settings


def alert_messages(sink):
    """Messages the sink received other than card emails (which carry a vCard)."""
    return [m for m in sink.messages if b".vcf" not in m.data]


def alert_recipients(sink):
    return sorted(r for m in alert_messages(sink) for r in m.rcpt_tos)


def test_a_job_finished_with_failures_alerts_its_creator_and_admins_once(
    company, people, alert_settings, smtp_sink, email_kind
):
    job = make_email_job(
        company, ["reject@example.org", "a@example.org"], created_by=people["creator"]
    )
    run_once(email_kind)
    job.refresh_from_db()
    assert (job.status, job.failed_items) == (Status.COMPLETED, 1)
    assert alert_recipients(smtp_sink) == ["admin@acme.test", "creator@acme.test"]
    message = alert_messages(smtp_sink)[0].message
    assert f"#{job.pk} of Acme finished with 1 of 2 items failed" in message["Subject"]
    assert f"https://cards.example.com/background-jobs/email/{job.pk}/" in message.get_content()

    # Later runs (and a second process's) find the event recorded: nothing more is sent.
    run_once(email_kind)
    alerts.check_jobs(email_kind, timezone.now())
    assert len(alert_messages(smtp_sink)) == 2
    assert AlertEvent.objects.get().notified_at is not None


def test_idle_runs_check_no_jobs_and_check_processors_catches_up(
    company, people, alert_settings, smtp_sink, email_kind
):
    """A job alert a run did not send (here: alerts were off; in life, a run killed right
    after finishing the job) is not looked for by idle runs, which stay cheap, but by the
    next run that serves a batch or by check_processors."""
    alert_settings.BULKJOBS_ALERTS = False
    make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)
    alert_settings.BULKJOBS_ALERTS = True
    run_once(email_kind)
    assert alert_messages(smtp_sink) == []
    call_command("check_processors", "--kind", "email")
    assert alert_recipients(smtp_sink) == ["admin@acme.test", "creator@acme.test"]


def test_a_job_without_failures_alerts_nobody(
    company, people, alert_settings, smtp_sink, email_kind
):
    make_email_job(company, ["a@example.org"], created_by=people["creator"])
    run_once(email_kind)
    run_once(email_kind)
    assert alert_messages(smtp_sink) == []
    assert not AlertEvent.objects.exists()


def test_another_companys_failures_reach_only_that_company(
    company, other_company, people, alert_settings, smtp_sink, email_kind
):
    make_email_job(other_company, ["reject@example.org"])  # nobody of Globex created it
    run_once(email_kind)
    assert alert_recipients(smtp_sink) == ["admin@globex.test"]


def test_a_creator_who_left_the_company_is_not_told(
    company, people, alert_settings, smtp_sink, email_kind
):
    make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    Membership.objects.filter(user=people["creator"]).delete()
    run_once(email_kind)
    assert alert_recipients(smtp_sink) == ["admin@acme.test"]


def test_an_expired_job_alerts_once(
    company, people, alert_settings, smtp_sink, email_kind, database_time
):
    alert_settings.BULKJOBS = {**alert_settings.BULKJOBS, "INACTIVE_MINUTES": "1"}
    job = make_email_job(company, ["tempfail@example.org"], created_by=people["creator"])
    run_once(email_kind)  # 450: to retry in 60 to 66 s; the job is processing
    run_once(email_kind)  # nothing due yet
    # The retry has been due for longer than the (shortened) limit: the rescue step
    # expires the job before a claim could serve it (waiting for the retry itself does
    # not count, tests/emails/test_retry_schedule.py).
    database_time.shift(timedelta(seconds=127))
    summary = run_once(email_kind)
    run_once(email_kind)
    assert summary.jobs_expired == 1
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert alert_recipients(smtp_sink) == ["admin@acme.test", "creator@acme.test"]
    message = alert_messages(smtp_sink)[0].message
    assert message["Subject"] == f"Email job #{job.pk} of Acme failed"
    assert "failed: Failed: no progress for 1 minutes." in message.get_content()
    assert AlertEvent.objects.get().event == AlertEvent.Event.JOB_EXPIRED


def test_a_job_paused_past_the_threshold_alerts_once(
    company, card, people, alert_settings, smtp_sink, database_time
):
    # Hourly runs count as a processor that kept running (a longer gap would move the
    # pause clock forward, as downtime does).
    alert_settings.BULKJOBS = {
        **alert_settings.BULKJOBS,
        "ALERT_PAUSED_HOURS": "2",
        "RUN_GAP_SECONDS": str(2 * 3600),
    }
    alert_settings.APPLE_TEAM_ID = ""  # no wallet platform: the wallet job pauses
    wallet = get_kind("wallet")
    job = BulkWalletApiJob.objects.create(
        company=company, total_items=1, created_by=people["creator"]
    )
    BulkWalletApiJobItem.objects.create(job=job, card=card)
    run_once(wallet)  # the pause begins
    database_time.shift(timedelta(hours=1))
    run_once(wallet)
    assert alert_messages(smtp_sink) == []  # paused for 1 hour: below the threshold
    database_time.shift(timedelta(minutes=61))
    run_once(wallet)
    run_once(wallet)
    database_time.shift(timedelta(hours=1))
    run_once(wallet)
    job.refresh_from_db()
    assert job.is_paused
    assert alert_recipients(smtp_sink) == ["admin@acme.test", "creator@acme.test"]
    content = alert_messages(smtp_sink)[0].message.get_content()
    # The company's people read plain words, and what the operator has to do as a notice.
    assert (
        "has been paused for 2.0 hours: Neither Apple Wallet nor Google Wallet is set up" in content
    )
    assert "The platform's operator has to set it up" in content


def test_a_stopped_processor_is_reported_to_admins_once_per_outage(
    db, alert_settings, smtp_sink, email_kind, database_time
):
    ProcessorRun.objects.create(kind="wallet", last_started_at=database_time.now())
    run_once(email_kind)
    database_time.shift(timedelta(minutes=9))
    run_once(email_kind)
    assert alert_messages(smtp_sink) == []
    database_time.shift(timedelta(minutes=2))  # 11 minutes without a wallet run
    run_once(email_kind)
    run_once(email_kind)
    assert alert_recipients(smtp_sink) == ["ops@platform.test"]
    message = alert_messages(smtp_sink)[0].message
    assert message["Subject"] == "[Business Cards] The wallet processor has not run for 11 minutes"

    # The wallet processor comes back, then stops again: a new outage, a new alert.
    run_once(get_kind("wallet"))
    database_time.shift(timedelta(minutes=15))
    run_once(email_kind)
    run_once(email_kind)
    assert alert_recipients(smtp_sink) == ["ops@platform.test", "ops@platform.test"]
    assert AlertEvent.objects.filter(event=AlertEvent.Event.PROCESSOR_STALE).count() == 2


def test_the_daily_digest_sends_each_person_one_email_listing_the_days_events(
    company, other_company, people, alert_settings, smtp_sink, email_kind, database_time
):
    alert_settings.BULKJOBS_ALERT_DIGEST = True
    first = make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)
    second = make_email_job(company, ["reject+2@example.org"])
    run_once(email_kind)
    make_email_job(other_company, ["reject+3@example.org"])
    run_once(email_kind)
    assert alert_messages(smtp_sink) == []  # nothing until the day is over
    assert AlertEvent.objects.count() == 3

    # The events move to the first and then the last minute before today's midnight
    # (TIME_ZONE's), as if the day had come to its end.
    now = database_time.now()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    database_time.shift(now - midnight - timedelta(minutes=1))  # 00:01 today
    run_once(email_kind)
    assert alert_messages(smtp_sink) == []
    database_time.shift(timedelta(minutes=2))  # 23:59 yesterday: that day is over
    run_once(email_kind)
    run_once(email_kind)
    alerts.send_digests(database_time.now())
    by_recipient = {m.rcpt_tos[0]: m.message for m in alert_messages(smtp_sink)}
    assert sorted(by_recipient) == ["admin@acme.test", "admin@globex.test", "creator@acme.test"]
    admin_digest = by_recipient["admin@acme.test"].get_content()
    assert f"#{first.pk} of Acme" in admin_digest and f"#{second.pk} of Acme" in admin_digest
    assert "Globex" not in admin_digest
    creator_digest = by_recipient["creator@acme.test"].get_content()
    assert f"#{first.pk} of Acme" in creator_digest and f"#{second.pk} " not in creator_digest
    assert by_recipient["admin@acme.test"]["Subject"] == "2 background job alerts"
    assert not AlertEvent.objects.filter(notified_at__isnull=True).exists()


def test_a_german_companys_digest_is_in_german(
    company, people, alert_settings, smtp_sink, email_kind, database_time
):
    """The events were recorded in the operators' language; the digest tells a
    company's people in theirs, made again from the jobs."""
    alert_settings.BULKJOBS_ALERT_DIGEST = True
    company.language = "de"
    company.save(update_fields=["language"])
    job = make_email_job(company, ["reject@example.org", "a@example.org"])
    run_once(email_kind)
    assert "finished with 1 of 2 items failed" in AlertEvent.objects.get().text
    now = database_time.now()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    database_time.shift(now - midnight + timedelta(minutes=1))  # 23:59 yesterday
    alerts.send_digests(database_time.now())
    digest = alert_messages(smtp_sink)[0].message.get_content()
    assert f"E-Mail-Auftrag #{job.pk} von Acme ist beendet; 1 von 2" in digest
    assert "finished with" not in digest


class WebhookServer:
    """A loopback HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, status=200):
        self.bodies = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                server.bodies.append(
                    (self.path, self.headers["Content-Type"], json.loads(self.rfile.read(length)))
                )
                self.send_response(server.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.status = status
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/services/T000/B000/secret-token"
        # shutdown() waits for serve_forever's next poll: the default 0.5 s is per test.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


def test_the_webhook_gets_each_alert_once_as_slack_json(
    company, people, alert_settings, smtp_sink, email_kind, webhook
):
    alert_settings.BULKJOBS_ALERT_WEBHOOK_URL = webhook.url
    job = make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)
    run_once(email_kind)
    assert len(webhook.bodies) == 1
    path, content_type, body = webhook.bodies[0]
    assert path == "/services/T000/B000/secret-token"
    assert content_type == "application/json"
    assert body == {"text": f"Email job #{job.pk} of Acme finished with 1 of 1 item failed."}
    assert len(alert_messages(smtp_sink)) == 2  # the emails still go out


def test_the_webhook_text_escapes_slack_formatting(
    company, people, alert_settings, smtp_sink, email_kind, webhook
):
    """A company's own words cannot ping a channel or hide a link in the operators' Slack."""
    company.name = "<!channel> & <https://evil.example|Click here>"
    company.save()
    alert_settings.BULKJOBS_ALERT_WEBHOOK_URL = webhook.url
    job = make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)
    [(_path, _type, body)] = webhook.bodies
    assert body == {
        "text": f"Email job #{job.pk} of &lt;!channel&gt; &amp; "
        "&lt;https://evil.example|Click here&gt; finished with 1 of 1 item failed."
    }
    assert "<" not in body["text"] and ">" not in body["text"]


def test_a_failing_webhook_is_logged_not_raised_and_keeps_its_secret(
    company, people, alert_settings, smtp_sink, email_kind, webhook, caplog
):
    webhook.status = 500
    alert_settings.BULKJOBS_ALERT_WEBHOOK_URL = webhook.url
    make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    with caplog.at_level(logging.INFO, logger="bulkjobs.alerts"):
        summary = run_once(email_kind)
    assert summary.jobs_completed == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["Alert webhook failed (HTTPError: HTTP Error 500: Internal Server Error)"]
    assert "secret-token" not in caplog.text
    assert len(alert_messages(smtp_sink)) == 2


def test_an_unreachable_webhook_times_out_without_stopping_the_run(
    company, people, alert_settings, smtp_sink, email_kind, caplog
):
    silent = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # never answers
    try:
        alert_settings.BULKJOBS = {**alert_settings.BULKJOBS, "ALERT_WEBHOOK_TIMEOUT": "0.3"}
        alert_settings.BULKJOBS_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{silent.server_port}/hook"
        make_email_job(company, ["reject@example.org"], created_by=people["creator"])
        summary = run_once(email_kind)
    finally:
        silent.server_close()
    assert summary.jobs_completed == 1
    assert "Alert webhook failed (TimeoutError" in caplog.text
    assert len(alert_messages(smtp_sink)) == 2


def test_alert_logs_name_no_address(company, people, alert_settings, smtp_sink, email_kind, caplog):
    make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    with caplog.at_level(logging.INFO, logger="bulkjobs.alerts"):
        run_once(email_kind)
    lines = [r.getMessage() for r in caplog.records if r.name == "bulkjobs.alerts"]
    assert any("Alert emailed to 2 recipient(s)" in line for line in lines)
    assert not any("@" in line for line in lines)


def test_an_alert_the_mail_server_refuses_is_recorded_not_retried(
    company, people, alert_settings, smtp_sink, email_kind, caplog
):
    alert_settings.BULKJOBS_ALERTS = False
    make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)  # finished with a failure, while alerts were off
    alert_settings.BULKJOBS_ALERTS = True
    smtp_sink.refused_senders.add("cards@example.com")
    # As the next run that serves a batch (or check_processors) catches up on it, twice.
    alerts.evaluate_after_run(email_kind)
    alerts.evaluate_after_run(email_kind)
    record = AlertEvent.objects.get()
    assert record.error.startswith("SMTPSenderRefused")
    assert record.notified_at is not None
    assert alert_messages(smtp_sink) == []
    assert caplog.text.count("Alert could not be emailed (SMTPSenderRefused") == 1


def test_alerts_can_be_turned_off(company, people, alert_settings, smtp_sink, email_kind):
    alert_settings.BULKJOBS_ALERTS = False
    make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)
    assert alert_messages(smtp_sink) == []
    assert not AlertEvent.objects.exists()


def test_two_processes_recording_the_same_event_send_once(company, people, alert_settings):
    """The unique constraint decides: the second insert of the same event fails."""
    fields = dict(
        event=AlertEvent.Event.JOB_FAILURES,
        source="email",
        object_id=7,
        occurred_at=START,
        company=company,
        text="x",
    )
    assert alerts._record(**fields) is not None
    assert alerts._record(**fields) is None
    assert alerts._record(**{**fields, "source": "wallet"}) is not None


def test_a_german_companys_alert_is_in_german(
    company, people, alert_settings, smtp_sink, email_kind
):
    """Told in the company's language, like its pages and card emails; the operators'
    log line and webhook keep the default language."""
    company.language = "de"
    company.save(update_fields=["language"])
    job = make_email_job(company, ["reject@example.org"], created_by=people["creator"])
    run_once(email_kind)
    message = alert_messages(smtp_sink)[0].message
    assert f"E-Mail-Auftrag #{job.pk} von Acme ist beendet" in message["Subject"]
    body = message.get_content()
    assert "Guten Tag" in body
    assert "Administrator von Acme" in body
    assert "finished with" in AlertEvent.objects.get().text
