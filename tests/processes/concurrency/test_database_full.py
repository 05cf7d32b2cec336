"""A `--loop` worker against a database server that is full: what was measured before
(with max_connections reached, a retry every 0.8 s, "Database unreachable" in the log,
throughput down 2.7x) and what it does now: it serves fewer companies at once with the
connections it gets, says the server is full, and waits with backoff when even its own
connection is refused. Every email is sent once.

The server is "full" for one account only (tests/db_connection_limit.py): the worker's
DATABASE_URL logs in as an account that may hold three connections (its main thread and
two more), so the shared server is never filled.
"""

import signal
import subprocess
import sys
import time

import pytest

from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import (
    MANAGE,
    make_email_job,
    start_processor,
    subprocess_env,
    wait_until,
)
from tests.db_connection_limit import (
    as_account,
    limited_account,
    open_raw_connection,
    server_database,
)

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

__all__ = ["server_database"]  # a fixture used below


def make_companies(count, emails):
    for n in range(count):
        company = Company.objects.create(name=f"Company {n}", slug=f"company-{n}")
        make_email_job(company, emails)


def run_worker_until_done(env, timeout=90):
    worker = start_processor(env, "--loop", "--sleep", "0.5", "--concurrency", "6")
    try:
        finished = wait_until(lambda: not BulkEmailJob.objects.active().exists(), timeout)
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=60)
    assert finished, stderr[-3000:]
    assert worker.returncode == 0, stderr[-3000:]
    return stdout


def assert_every_email_sent_once(smtp_sink, total):
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == total
    assert BulkEmailJobItem.objects.filter(status=Status.COMPLETED).count() == total
    assert not BulkEmailJob.objects.filter(claim_token__isnull=False).exists()


def log_lines(tmp_path, text):
    log = tmp_path / "app.log"
    if not log.exists():  # the worker has not logged anything yet
        return []
    return [line for line in log.read_text().splitlines() if text in line]


def test_a_worker_refused_threads_serves_fewer_companies_without_a_retry_loop(
    server_database, smtp_sink, tmp_path
):
    smtp_sink.delay = 0.01
    make_companies(12, 20)
    with limited_account(3) as name:
        with as_account(name):
            env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
        run_worker_until_done(env)

    assert_every_email_sent_once(smtp_sink, 12 * 20)
    lowered = log_lines(tmp_path, "Database full: serving ")
    assert lowered and "3 companies at once instead of 6" in lowered[0]
    # A handful of lowerings, not one line per try; and no outage: the server was up.
    assert len(log_lines(tmp_path, "Database full")) <= 6
    assert log_lines(tmp_path, "unreachable") == []
    assert log_lines(tmp_path, "refuses new connections") == []


def test_a_worker_whose_own_connection_is_refused_waits_with_backoff(
    server_database, smtp_sink, tmp_path
):
    make_companies(2, 5)
    with limited_account(3) as name:
        with as_account(name):
            env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
        # Every slot of the account taken until 5 s after the worker first found it full
        # (counted from then: a loaded machine starts the worker late).
        held = [open_raw_connection(name) for _ in range(3)]
        worker = start_processor(env, "--loop", "--sleep", "0.5", "--concurrency", "6")
        try:
            assert wait_until(lambda: log_lines(tmp_path, "refuses new connections"), 60)
            time.sleep(5)
            for raw in held:
                raw.close()
            finished = wait_until(lambda: not BulkEmailJob.objects.active().exists(), 60)
        finally:
            worker.send_signal(signal.SIGTERM)
            _stdout, stderr = worker.communicate(timeout=60)
    assert finished and worker.returncode == 0, stderr[-3000:]
    assert_every_email_sent_once(smtp_sink, 2 * 5)

    [full] = log_lines(tmp_path, "refuses new connections")
    assert "WARNING" in full
    assert (
        "The database server refuses new connections: it is full (max_connections reached); "
        "retrying with backoff up to every 30 s (" in full
    )
    [back] = log_lines(tmp_path, "Database answers again after")
    # Tried at once, then after 1, 2 and 4 s: back after the fourth wait, about 7 s.
    seconds = int(back.split("after ")[1].split(" s")[0])
    assert 5 <= seconds <= 16
    assert log_lines(tmp_path, "unreachable") == []


def test_a_cron_run_whose_connection_is_refused_says_the_server_is_full(server_database, tmp_path):
    with limited_account(1) as name:
        with as_account(name):
            env = subprocess_env(tmp_path, 25)
        held = open_raw_connection(name)
        try:
            done = subprocess.run(
                [sys.executable, MANAGE, "process_email_jobs"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            held.close()
    assert done.returncode == 1
    [line] = log_lines(tmp_path, "ERROR")
    assert (
        "The database server refuses new connections: it is full (max_connections reached) ("
        in line
    )
    assert line.endswith(
        "this run stopped. Lower BULKJOBS_EMAIL_CONCURRENCY (--concurrency) or "
        "BULKJOBS_*_CONNECTIONS, or raise the server's max_connections."
    )
