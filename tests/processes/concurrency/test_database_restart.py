"""Restarting PostgreSQL under a running email processor is not a crash.

A private PostgreSQL server (tests/private_postgres.py) is stopped mid-batch under a
real `process_email_jobs` process and started again; the worker must wait for it,
release its claim and finish the job within seconds, sending nobody two emails. These
tests bring their own server, so they run once (in the SQLite pass of bin/run-tests:
the `own_database_server` marker), whatever database the suite uses.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from emails.kind import EmailJobKind
from tests.conftest import MANAGE, start_processor, wait_until
from tests.private_postgres import PrivatePostgres, unavailable_reason
from tests.smtp_sink import free_port

pytestmark = pytest.mark.own_database_server

TEMPLATE_DB = "bizcards_migrated"


@pytest.fixture(scope="module")
def postgres():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires a private PostgreSQL server: {reason}")
        pytest.skip(reason)
    server = PrivatePostgres().init().start()
    try:
        server.create_database(TEMPLATE_DB)
        manage(server.url(TEMPLATE_DB), "migrate", "--noinput")
        yield server
    finally:
        server.destroy()


def manage(database_url, *args, env=None):
    env = dict(env or os.environ, DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def database(postgres, request):
    """A fresh migrated database on the private server (a copy of the migrated template)."""
    name = f"bizcards_{request.node.name[:40]}"
    postgres.create_database(name, template=TEMPLATE_DB)
    return name


def queue_email_job(database_url, recipients):
    """Create a company, a card and an email job in that database; return the job's id."""
    script = (
        "from cards.models import Company\n"
        "from tests.conftest import make_email_job\n"
        "company = Company.objects.create(name='Restart', slug='restart')\n"
        f"print(make_email_job(company, {recipients}).pk)\n"
    )
    return int(manage(database_url, "shell", "--no-imports", "-c", script).strip())


def worker_env(tmp_path, database_url, smtp_port):
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        LOG_FILE=str(tmp_path / "app.log"),
        LOG_CONSOLE_LEVEL="WARNING",
        # The company's pace is not these tests' subject: the next run finishes the job.
        BULKJOBS_EMAIL_COMPANY_RATE="0",
        PYTHONUNBUFFERED="1",
    )


def job_row(postgres, database, job_id):
    with postgres.connect(database) as conn:
        return conn.execute(
            "SELECT status, claim_token FROM bulk_email_jobs WHERE id = %s", [job_id]
        ).fetchone()


def item_rows(postgres, database, job_id):
    with postgres.connect(database) as conn:
        return conn.execute(
            "SELECT recipient_email, status, reason FROM bulk_email_job_items "
            "WHERE bulk_email_job_id = %s",
            [job_id],
        ).fetchall()


def assert_nothing_sent_twice_and_nothing_lost(items, smtp_sink, total, unknown=0):
    """Every item delivered once. `unknown`: how many may have failed as "delivery
    unknown" (a process that ended with the database still down could not write what
    it knew); a worker that saw the database come back wrote every outcome it knew."""
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)), "a recipient got two emails"
    assert len(items) == total
    completed = {email for email, status, _ in items if status == "completed"}
    failed = [(email, reason) for email, status, reason in items if status == "failed"]
    assert completed <= set(recipients)
    assert len(failed) <= unknown
    for _email, reason in failed:
        assert reason == EmailJobKind.interrupted_reason
    assert len(completed) + len(failed) == total


def test_a_worker_survives_a_postgres_restart_mid_batch(postgres, database, smtp_sink, tmp_path):
    url = postgres.url(database)
    job_id = queue_email_job(url, 40)
    smtp_sink.delay = 0.1
    worker = start_processor(worker_env(tmp_path, url, smtp_sink.port), "--loop", "--sleep", "0.2")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 8, timeout=30, interval=0.02)
        postgres.restart(down_seconds=2.5)
        # Well below the 10-minute stuck rule: the worker released its own claim.
        finished = wait_until(lambda: job_row(postgres, database, job_id)[0] == "completed", 90)
        alive_after_restart = worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    assert alive_after_restart, stderr[-2000:]
    assert finished, "the job did not finish after the restart"
    assert worker.returncode == 0, stderr[-2000:]
    assert stdout.strip().endswith("Stopped.")
    assert "Traceback" not in stderr

    assert_nothing_sent_twice_and_nothing_lost(item_rows(postgres, database, job_id), smtp_sink, 40)
    assert job_row(postgres, database, job_id)[1] is None
    log = (tmp_path / "app.log").read_text()
    # One line when the outage starts and one when it ends, not one per attempt.
    assert log.count("Database unreachable (") == 1
    assert log.count("Database answers again") == 1
    assert "1 claimed job(s) released" in log


def test_a_one_shot_run_that_loses_postgres_exits_with_one_line(
    postgres, database, smtp_sink, tmp_path
):
    url = postgres.url(database)
    job_id = queue_email_job(url, 30)
    smtp_sink.delay = 0.1
    env = worker_env(tmp_path, url, smtp_sink.port)
    run = start_processor(env)
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 5, timeout=30, interval=0.02)
        postgres.restart(down_seconds=2)
    finally:
        stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if "did not answer" in line]
    assert len(error_lines) == 1, stderr
    assert "The database did not answer (" in error_lines[0]
    # The database was back within the run's few seconds of grace: the claim is
    # released now, not after the 10-minute stuck rule.
    assert "Released its 1 claimed job(s)" in error_lines[0]
    assert job_row(postgres, database, job_id) == ("processing", None)

    smtp_sink.delay = 0
    manage(url, "process_email_jobs", env=env)
    assert job_row(postgres, database, job_id)[0] == "completed"
    assert_nothing_sent_twice_and_nothing_lost(item_rows(postgres, database, job_id), smtp_sink, 30)


def test_a_one_shot_run_gives_up_while_postgres_stays_down(postgres, database, smtp_sink, tmp_path):
    url = postgres.url(database)
    job_id = queue_email_job(url, 20)
    smtp_sink.delay = 0.1
    run = start_processor(worker_env(tmp_path, url, smtp_sink.port))
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 3, timeout=30, interval=0.02)
        postgres.stop()
        stdout, stderr = run.communicate(timeout=60)
    finally:
        postgres.start()
    assert run.returncode == 1
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if "did not answer" in line]
    assert len(error_lines) == 1, stderr
    assert "released by the next run on this host, or by any run 30 s after" in error_lines[0]
    assert "Check that the database server is running" in error_lines[0]
    # Nothing could release the claim while the server was down.
    assert job_row(postgres, database, job_id)[1] is not None

    # The next run on this host sees the claim's worker is gone and goes on at once.
    smtp_sink.delay = 0
    started = time.monotonic()
    manage(url, "process_email_jobs", env=worker_env(tmp_path, url, smtp_sink.port))
    assert time.monotonic() - started < 30
    assert job_row(postgres, database, job_id) == ("completed", None)
    # The item in flight when the server stopped is the one "delivery unknown".
    assert_nothing_sent_twice_and_nothing_lost(
        item_rows(postgres, database, job_id), smtp_sink, 20, unknown=1
    )


def test_a_cron_run_while_the_database_is_down_exits_with_one_line(tmp_path):
    nothing_listens = f"postgres://postgres@127.0.0.1:{free_port()}/bizcards"
    run = subprocess.run(
        [sys.executable, MANAGE, "process_email_jobs", "--company", "acme"],
        env=dict(os.environ, DATABASE_URL=nothing_listens, LOG_FILE=str(tmp_path / "app.log")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    error_lines = [line for line in run.stderr.splitlines() if "did not answer" in line]
    assert len(error_lines) == 1, run.stderr
    assert "The database did not answer (OperationalError: " in error_lines[0]
    assert "Check that the database server is running and DATABASE_URL is right." in error_lines[0]
    # It held no claim, so it did not wait for the database.
    assert "claimed job(s)" not in error_lines[0]
