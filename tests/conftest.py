"""Shared fixtures: personas (owner, member, outsider), companies and cards, a real SMTP sink."""

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from cards.models import BusinessCard, Company, Membership

# The test tiers (docs/development.md): a test's folder gives it its tier's marker, so
# `-m "not processes and not browser"` selects the in-process core.
TIER_FOLDERS = {"processes": pytest.mark.processes, "browser": pytest.mark.browser}
TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.is_relative_to(TESTS):
            folder = item.path.relative_to(TESTS).parts[0]
            if folder in TIER_FOLDERS:
                item.add_marker(TIER_FOLDERS[folder])


@pytest.fixture
def company(db):
    return Company.objects.create(name="Acme", slug="acme")


@pytest.fixture
def other_company(db):
    return Company.objects.create(name="Globex", slug="globex")


def make_user(username, company=None, role=Membership.Role.MEMBER, **extra):
    user = get_user_model().objects.create_user(
        username=username, password="pw-" + username, **extra
    )
    if company is not None:
        Membership.objects.create(user=user, company=company, role=role)
    return user


@pytest.fixture
def owner(company):
    """A company admin of Acme."""
    return make_user("owner", company, Membership.Role.ADMIN)


@pytest.fixture
def member(company):
    """A plain member of Acme."""
    return make_user("member", company, Membership.Role.MEMBER)


@pytest.fixture
def outsider(other_company):
    """An admin of another company."""
    return make_user("outsider", other_company, Membership.Role.ADMIN)


def make_cards(company, count, prefix="Person", **fields):
    """`count` cards "<prefix> 1", "<prefix> 2"... with an email address, phone and website;
    `fields` are set on every card too (address="...", no field of those)."""
    return BusinessCard.objects.bulk_create(
        [
            BusinessCard(
                company=company,
                full_name=f"{prefix} {n}",
                job_title="Engineer",
                email=f"{prefix.lower()}{n}@example.com",
                phone="+49 30 1234567",
                website="https://example.com",
                **fields,
            )
            for n in range(1, count + 1)
        ]
    )


@pytest.fixture
def card(company):
    return BusinessCard.objects.create(
        company=company,
        full_name="Ada Lovelace",
        job_title="Head of Engineering",
        email="ada@example.com",
        phone="+44 20 7946 0001",
        mobile="+44 7700 900001",
        website="https://example.com/ada",
        address="1 Analytical Way\nLondon",
    )


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server on loopback, with Django's SMTP backend pointed at it."""
    from emails import connections
    from emails.smtp import reply_time
    from tests.smtp_sink import SmtpSink

    sink = SmtpSink().start()
    # A reply time another test's relay left (emails.smtp.reply_time) sizes no lane here.
    reply_time.forget()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield sink
    # Connections kept for a next batch (emails/connections.py) end with their test.
    connections.pool.close_all()
    reply_time.forget()
    sink.stop()


def make_email_job(
    company,
    recipients=None,
    *,
    card=None,
    cards=None,
    subject="Hello",
    message="",
    created_by=None,
    **state,
):
    """A real email job, created through the service with its items.

    With `recipients` (addresses, or how many to generate) one card is sent to each of
    them: `card`, or a new one. With `cards` instead, each card is sent to its holder.
    `state` is written to the job afterwards (status=..., created_at=...).
    """
    from emails.models import BulkEmailJob
    from emails.services import create_email_job

    if (recipients is None) == (cards is None) or (cards is not None and card is not None):
        raise TypeError("make_email_job() takes recipients (and a card), or cards")
    if cards is None:
        if isinstance(recipients, int):
            recipients = [f"r{n}.c{company.pk}@example.net" for n in range(recipients)]
        if card is None:
            card = make_cards(company, 1, prefix=f"Holder{company.pk}")[0]
        cards, recipients_text = [card], "\n".join(recipients)
    else:
        recipients_text = None
    job = create_email_job(
        company=company,
        cards=cards,
        subject=subject,
        message=message,
        recipients_text=recipients_text,
        created_by=created_by,
    )
    if state:
        BulkEmailJob.objects.filter(pk=job.pk).update(**state)
        job.refresh_from_db()
    return job


class DatabaseTime:
    """Time passing as the engine sees it.

    The engine goes by the database's clock (bulkjobs/engine/clock.py), which a test
    cannot move; time_machine moves this process's clock only, which is what a host with
    a skewed clock looks like. So time passes the other way round: every time our apps
    stored moves back by the same amount, as if all of it had happened that much
    earlier, and the rate buckets' arrival times with it. ActivityHour rows stay (they
    are keyed by the hour they count).
    """

    APPS = ("bulkjobs", "cards", "emails", "wallet")

    def now(self):
        """The database's time now (one query)."""
        from bulkjobs.engine import clock

        clock.sync()
        return clock.now()

    def shift(self, delta):
        from django.apps import apps
        from django.db import models
        from django.db.models import F

        from bulkjobs.models import ActivityHour, RateBucket

        for model in apps.get_models():
            if model._meta.app_label not in self.APPS or model is ActivityHour:
                continue
            fields = [
                f.name for f in model._meta.concrete_fields if isinstance(f, models.DateTimeField)
            ]
            if fields:
                model.objects.update(**{name: F(name) - delta for name in fields})
        RateBucket.objects.update(tat=F("tat") - delta.total_seconds())

    def move_to(self, moment):
        """Let time pass until the database's clock reads `moment` (if it is ahead)."""
        delta = moment - self.now()
        if delta > timedelta(0):
            self.shift(delta)


@pytest.fixture
def database_time(db):
    return DatabaseTime()


@pytest.fixture(autouse=True)
def fresh_clock_reading(monkeypatch):
    """Each test starts from no reading of the database's clock (offset 0), as a new
    process does: a reading taken in another test, under another time_machine, would
    otherwise carry over."""
    from bulkjobs.engine import clock

    monkeypatch.setattr(clock, "_reading", clock.Reading(offset=0.0, identity=""))


@pytest.fixture
def email_kind():
    from bulkjobs.kinds import get_kind

    return get_kind("email")


def database_url():
    """DATABASE_URL of the database the tests run on, for subprocesses to use."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    scheme = "postgres" if "postgresql" in s["ENGINE"] else "mysql"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"{scheme}://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT']}/{s['NAME']}"


def subprocess_env(tmp_path, smtp_port, **extra):
    """Environment for a manage.py subprocess sharing the test database and SMTP sink."""
    import os

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        LOG_FILE=str(tmp_path / "app.log"),
        # The log file keeps every line; the terminal (a pipe the test reads only at the
        # end, which blocks the process when full) gets warnings and errors.
        LOG_CONSOLE_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


MANAGE = str(Path(__file__).resolve().parents[1] / "manage.py")


def start_processor(env, *args):
    """`manage.py process_email_jobs ARGS` as its own process (as cron or a worker)."""
    return subprocess.Popen(
        [sys.executable, MANAGE, "process_email_jobs", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_when_due(kind, job):
    """Run again once every pending item of the job is due (time passes past backoff)."""
    from bulkjobs.engine import run_once
    from bulkjobs.models import Status

    pending = job.items.filter(status=Status.PENDING)
    due = max(pending.values_list("next_attempt_at", flat=True))
    DatabaseTime().move_to(due + timedelta(seconds=1))
    return run_once(kind)


def wait_until(condition, timeout, interval=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return condition()
