"""Alerts: tell a company when a job needs attention, and the operators when a processor stops.

Events and who hears of them:
- a job finished with failed items, expired (inactive, or paused past the pause limit),
  or has been paused longer than BULKJOBS_ALERT_PAUSED_HOURS: its creator and its
  company's admins, by email (at once, or in one daily digest per person when
  BULKJOBS_ALERT_DIGEST is on);
- a processor (a kind's processing command) has not started a run for
  BULKJOBS_PROCESSOR_STALE_MINUTES: the operators (settings.ADMINS), once per outage;
- every event, when BULKJOBS_ALERT_WEBHOOK_URL is set: the operator's webhook, as
  Slack-compatible JSON ({"text": ...}).

Where they are found: at the end of every processing run (evaluate_after_run(); no
query for an idle run, one indexed query for one that served batches) and by `manage.py check_processors`. A processor
that stopped cannot report itself, so the other kind's runs and check_processors do.

Once only: every process that sees an event tries to insert its AlertEvent row; the
unique constraint lets exactly one insert succeed, and only that process sends. Sending
is at most once, like the card emails: an alert whose email fails is logged with the
error, not retried every minute.
"""

import json
import logging
import urllib.request
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cards.locale import company_locale

from .. import conf, reasons
from ..models import AlertDigest, AlertEvent, ProcessorRun, Status

log = logging.getLogger("bulkjobs.alerts")

Event = AlertEvent.Event

#: How far back a run looks for finished jobs not yet alerted. The run that finishes a
#: job normally alerts at once; this only bounds the query, and covers a run that died
#: between finishing a job and sending its alert.
LOOKBACK = timedelta(hours=1)
#: Most job events one run handles (the rest are handled by the next run).
MAX_EVENTS_PER_RUN = 50


def evaluate_after_run(kind, now=None, summary=None, last_starts=None):
    """What a processing run calls last: alerts for this kind's jobs, for stopped
    processors, and the daily digests when they are due.

    An idle run (cron's every minute, most of the day) pays no query for them: a job
    event needs a run that served a batch (a job finished, or a paused job was tried
    again) or expired a job in its rescue, and a stopped processor shows in the start
    times the run read when it began (`last_starts`, {kind name: time}). Without those
    (a caller other than a run), everything is checked."""
    if not settings.BULKJOBS_ALERTS:
        return
    now = now or timezone.now()
    if summary is None or summary.batches or summary.jobs_expired or summary.claims_released:
        check_jobs(kind, now)
    if last_starts is None or _any_stale(last_starts, kind, now):
        check_processors(now)
    if settings.BULKJOBS_ALERT_DIGEST:
        send_digests(now)


# --- jobs ----------------------------------------------------------------------------


def check_jobs(kind, now):
    """Record and send the alerts of this kind's jobs that need one. One query when none
    does (served by the jobs' (status, finished_at) and (status, company, ...) indexes)."""
    jobs = kind.job_model.objects
    alerted = AlertEvent.objects.filter(source=kind.name, object_id=OuterRef("pk")).filter(
        Q(occurred_at=OuterRef("finished_at")) | Q(occurred_at=OuterRef("paused_at"))
    )
    since = now - LOOKBACK
    paused_before = now - timedelta(hours=conf.get("ALERT_PAUSED_HOURS"))
    needing = (
        jobs.filter(
            Q(status=Status.FAILED, finished_at__gte=since)
            | Q(status=Status.COMPLETED, failed_items__gt=0, finished_at__gte=since)
            # A pause is keyed on its paused_at. Downtime of every processor moves that
            # forward (bulkjobs.engine.note_run_started), so a job still paused after a
            # long outage may be reported once more: its pause clock restarted too.
            | Q(status=Status.PROCESSING, paused_at__lt=paused_before)
        )
        .filter(~Exists(alerted))
        .select_related("company")
        .order_by("pk")[:MAX_EVENTS_PER_RUN]
    )
    for job in needing:
        event, occurred_at, text = describe_job_event(kind, job, now)
        record = _record(
            event=event,
            source=kind.name,
            object_id=job.pk,
            occurred_at=occurred_at,
            company=job.company,
            created_by_id=job.created_by_id,
            text=text,
            created_at=now,
        )
        if record is None:
            continue
        log.warning("Alert: %s", text)
        post_webhook(text)
        if not settings.BULKJOBS_ALERT_DIGEST:
            _send_job_alert(kind, job, record)


def describe_job_event(kind, job, now, *, for_staff=True):
    """(event, when it happened, one line for people) of a job that needs an alert, in
    the active language (the operators' webhook and the log get the default; a company's
    people get theirs, see _send_job_alert). The reason is rendered by bulkjobs.reasons:
    operators (`for_staff`) read setting names, a company's people plain words."""
    noun = str(kind.job_noun)
    name = _("%(job)s #%(id)s of %(company)s") % {
        "job": noun[0].upper() + noun[1:],
        "id": job.pk,
        "company": job.company.name,
    }
    if job.status == Status.FAILED:
        return (
            Event.JOB_EXPIRED,
            job.finished_at,
            _("%(name)s failed: %(reason)s")
            % {"name": name, "reason": reasons.describe(job, for_staff=for_staff)},
        )
    if job.status == Status.COMPLETED:
        return (
            Event.JOB_FAILURES,
            job.finished_at,
            ngettext(
                "%(name)s finished with %(failed)s of %(total)s item failed.",
                "%(name)s finished with %(failed)s of %(total)s items failed.",
                job.total_items,
            )
            % {
                "name": name,
                "failed": reasons.number(job.failed_items),
                "total": reasons.number(job.total_items),
            },
        )
    hours = (now - job.paused_at).total_seconds() / 3600
    return (
        Event.JOB_PAUSED,
        job.paused_at,
        _("%(name)s has been paused for %(hours)s hours: %(cause)s")
        % {
            "name": name,
            "hours": formats.number_format(hours, 1),
            "cause": reasons.pause_cause(job, for_staff=for_staff),
        },
    )


def _notice_of(job):
    """The page-level notice of the job's reason for a company's people, or ""."""
    return reasons.describe(job).notice


def recipients_of(company_id, created_by_id):
    """Users to tell about a company's job: its creator and the company's admins, each
    only while a member of that company, active and with an email address."""
    from cards.models import Membership

    members = Membership.objects.filter(company_id=company_id)
    wanted = Q(role=Membership.Role.ADMIN)
    if created_by_id is not None:
        wanted |= Q(user_id=created_by_id)
    return list(
        get_user_model()
        .objects.filter(
            pk__in=members.filter(wanted).values("user_id"), is_active=True, email__gt=""
        )
        .order_by("pk")
    )


def _send_job_alert(kind, job, record):
    users = recipients_of(job.company_id, job.created_by_id)
    if not users:
        _note_sent(record, error="no recipient: the company has no admin with an email address")
        log.warning("Alert not emailed (no admin with an email address): %s", record.text)
        return
    # Told in the company's language and time zone, like its card emails and pages.
    with company_locale(job.company):
        _event, _when, text = describe_job_event(kind, job, timezone.now(), for_staff=False)
        context = {
            "text": text,
            # What a company's people read instead of an operator-only cause.
            "notice": _notice_of(job),
            "job": job,
            "job_url": settings.SITE_URL + reverse("bulkjobs:job_detail", args=[kind.name, job.pk]),
            "event": record.event,
        }
        messages = [
            mail.EmailMessage(
                subject=_subject(text),
                body=render_to_string("alerts/job_alert.txt", {**context, "user": user}),
                to=[user.email],
            )
            for user in users
        ]
    _send(record, messages)


# --- processors ----------------------------------------------------------------------


def stale_processors(now, minutes=None):
    """ProcessorRun rows of processors that have not started a run for `minutes`
    (default BULKJOBS_PROCESSOR_STALE_MINUTES). A kind that never ran has no row: it is
    not reported (a deployment may not use it)."""
    minutes = conf.get("PROCESSOR_STALE_MINUTES") if minutes is None else minutes
    return ProcessorRun.objects.filter(last_started_at__lt=now - timedelta(minutes=minutes))


def _any_stale(last_starts, kind, now):
    """True if another kind's processor had not started a run for the stale threshold
    when this run began (this run's own kind has just started)."""
    cutoff = now - timedelta(minutes=conf.get("PROCESSOR_STALE_MINUTES"))
    return any(
        started is not None and started < cutoff
        for name, started in last_starts.items()
        if name != kind.name
    )


def check_processors(now, minutes=None):
    """Tell the operators about each processor that stopped, once per outage (the event
    is keyed on the processor's last start). One query when none has stopped, or all
    were already reported."""
    reported = AlertEvent.objects.filter(
        source=OuterRef("kind"),
        object_id=0,
        event=Event.PROCESSOR_STALE,
        occurred_at=OuterRef("last_started_at"),
    )
    for run in stale_processors(now, minutes).filter(~Exists(reported)):
        silent = int((now - run.last_started_at).total_seconds() // 60)
        text = (
            f"The {run.kind} processor has not run for {silent} minutes (last run started "
            f"{run.last_started_at:%Y-%m-%d %H:%M} UTC); its jobs are not being processed. "
            "Check cron (or the workers) and the log file."
        )
        record = _record(
            event=Event.PROCESSOR_STALE,
            source=run.kind,
            occurred_at=run.last_started_at,
            text=text,
            created_at=now,
        )
        if record is None:
            continue
        log.error("Alert: %s", text)
        post_webhook(text)
        if not settings.ADMINS:
            _note_sent(record, error="ADMINS is not set")
            log.warning("Alert not emailed: set ADMINS to receive processor alerts")
            continue
        body = render_to_string("alerts/processor_alert.txt", {"text": text, "run": run})
        message = mail.EmailMessage(
            subject=settings.EMAIL_SUBJECT_PREFIX + _subject(text),
            body=body,
            from_email=settings.SERVER_EMAIL,
            to=[address for _name, address in settings.ADMINS],
        )
        _send(record, [message])


# --- daily digest --------------------------------------------------------------------


def _event_text(record):
    """A recorded job event's line in the active language (a company's people read
    theirs): its text was written in the operators' language when it happened, so it is
    made again from the job while the job still shows what the event was about; else
    (the job was retried, resumed or deleted since) the line as recorded."""
    from ..kinds import get_kind

    try:
        kind = get_kind(record.source)
    except LookupError:
        return record.text
    job = kind.job_model.objects.select_related("company").filter(pk=record.object_id).first()
    if job is None:
        return record.text
    if record.event == Event.JOB_PAUSED:
        still = job.is_paused
    else:
        wanted = {Event.JOB_EXPIRED: Status.FAILED, Event.JOB_FAILURES: Status.COMPLETED}
        still = job.status == wanted.get(record.event)
    if not still:
        return record.text
    # The pause's length as it was when the event was recorded.
    return describe_job_event(kind, job, record.created_at, for_staff=False)[2]


def send_digests(now):
    """Send each person one email listing the job events before today (in TIME_ZONE)
    not yet sent, at most one a day (AlertDigest is unique per user and day). One query
    when nothing waits."""
    today = timezone.localdate(now)
    start_of_today = timezone.make_aware(datetime.combine(today, time.min))
    waiting = list(
        AlertEvent.objects.filter(
            notified_at__isnull=True, created_at__lt=start_of_today, company__isnull=False
        ).order_by("created_at", "pk")
    )
    if not waiting:
        return
    per_user = {}
    for record in waiting:
        for user in recipients_of(record.company_id, record.created_by_id):
            per_user.setdefault(user, []).append(record)
    for user, records in per_user.items():
        try:
            with transaction.atomic():
                AlertDigest.objects.create(user=user, day=today, sent_at=now)
        except IntegrityError:
            continue  # today's digest went out (another process, or earlier today)
        count = len(records)
        # A person belongs to one company: its language and time zone, as on its pages.
        with company_locale(records[0].company):
            lines = [{"created_at": r.created_at, "text": _event_text(r)} for r in records]
            body = render_to_string(
                "alerts/digest.txt",
                {
                    "user": user,
                    "records": lines,
                    "dashboard_url": settings.SITE_URL + reverse("bulkjobs:dashboard"),
                },
            )
            subject = ngettext(
                "%(count)d background job alert", "%(count)d background job alerts", count
            ) % {"count": count}
        message = mail.EmailMessage(subject=subject, body=body, to=[user.email])
        try:
            message.send()
        except Exception as exc:
            log.error("Alert digest for user %s could not be sent: %s", user.pk, exc)
        else:
            log.info("Alert digest sent to user %s: %d event(s)", user.pk, count)
    AlertEvent.objects.filter(pk__in=[r.pk for r in waiting], notified_at__isnull=True).update(
        notified_at=now
    )


# --- sending -------------------------------------------------------------------------


def _record(**fields):
    """Insert the event's row; None if another process (or an earlier run) has it."""
    try:
        with transaction.atomic():
            return AlertEvent.objects.create(**fields)
    except IntegrityError:
        return None


def _subject(text):
    first = text.split(": ", 1)[0].split(" (", 1)[0]
    return first if len(first) <= 120 else first[:119] + "…"


def _send(record, messages):
    try:
        with mail.get_connection() as connection:
            connection.send_messages(messages)
    except Exception as exc:
        _note_sent(record, error=f"{type(exc).__name__}: {exc}")
        log.error("Alert could not be emailed (%s: %s): %s", type(exc).__name__, exc, record.text)
        return
    _note_sent(record)
    log.info("Alert emailed to %d recipient(s): %s", len(messages), record.text)


def _note_sent(record, error=""):
    AlertEvent.objects.filter(pk=record.pk).update(notified_at=timezone.now(), error=error[:500])


def slack_escape(text):
    """The text as Slack's (and Mattermost's) message formatting takes it literally: `&`,
    `<` and `>` escaped, so a company named `<!channel>` or `<https://evil|Click>` pings
    nobody and links nowhere."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post_webhook(text):
    """POST {"text": text} to BULKJOBS_ALERT_WEBHOOK_URL, if set, escaped for Slack's
    formatting (company and job names are the companies' own words). A failure is logged,
    never raised: an alert must not stop a run."""
    url = settings.BULKJOBS_ALERT_WEBHOOK_URL
    if not url:
        return False
    if not url.startswith(("https://", "http://")):
        log.error("Alert webhook not called: BULKJOBS_ALERT_WEBHOOK_URL must be an http(s) URL")
        return False
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        url,
        data=json.dumps({"text": slack_escape(text)}).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "bizcards-alerts"},
        method="POST",
    )
    try:
        timeout = conf.get("ALERT_WEBHOOK_TIMEOUT")
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            reply.read(1024)
    except Exception as exc:
        # The URL holds the webhook's secret (Slack's token is part of the path): never log it.
        log.error("Alert webhook failed (%s: %s)", type(exc).__name__, _without_url(exc, url))
        return False
    return True


def _without_url(exc, url):
    return str(exc).replace(url, "<webhook URL>")
