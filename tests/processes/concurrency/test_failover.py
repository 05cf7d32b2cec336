"""A private PostgreSQL primary with an asynchronous standby, promoted under a running
`process_email_jobs --loop` worker while the standby lags behind.

The worker reaches the database through an endpoint (a TcpProxy, as a managed service's
address) that moves to the standby when it is promoted; the standby replicates through
another proxy, frozen to make it lag: what the worker sends meanwhile is written to the
primary only, and lost with it. The rules this checks (docs/lifecycle.md, "Delivery
guarantees"): no company stalls (the claims from before the failover are released at
once, not after the 10-minute stuck rule), and the items the job's batch may have sent
in the lag are failed as "delivery unknown", not sent again.
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
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.own_database_server


@pytest.fixture
def servers():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires private PostgreSQL servers: {reason}")
        pytest.skip(reason)
    primary = PrivatePostgres().init().start()
    link = TcpProxy(primary.port).start()
    standby = None
    try:
        standby = PrivatePostgres.standby_of(primary, link.port).start()
        endpoint = TcpProxy(primary.port).start()
        yield primary, standby, link, endpoint
        endpoint.stop()
    finally:
        link.stop()
        for server in (standby, primary):
            if server is not None:
                server.destroy()


def manage(url, *args, env=None):
    env = dict(env or os.environ, DATABASE_URL=url)
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def replicated(primary):
    with primary.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0] == 1


def items(server, database):
    with server.connect(database) as conn:
        return conn.execute(
            "SELECT recipient_email, status, reason FROM bulk_email_job_items ORDER BY id"
        ).fetchall()


def job_status(server, database):
    with server.connect(database) as conn:
        return conn.execute("SELECT status FROM bulk_email_jobs").fetchone()[0]


def test_a_promoted_asynchronous_standby_stalls_nobody_and_resends_nothing(
    servers, smtp_sink, tmp_path
):
    primary, standby, link, endpoint = servers
    assert wait_until(lambda: replicated(primary), timeout=30)
    primary.create_database("bizcards")
    url = f"postgres://postgres@127.0.0.1:{endpoint.port}/bizcards"
    manage(url, "migrate", "--noinput")
    manage(
        url,
        "shell",
        "--no-imports",
        "-c",
        "from cards.models import Company\n"
        "from tests.conftest import make_email_job\n"
        "make_email_job(Company.objects.create(name='Failover', slug='failover'), 40)\n",
    )
    env = dict(
        os.environ,
        DATABASE_URL=url,
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_sink.port}",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        LOG_FILE=str(tmp_path / "app.log"),
        LOG_CONSOLE_LEVEL="WARNING",
        BULKJOBS_EMAIL_COMPANY_RATE="0",
        PYTHONUNBUFFERED="1",
    )
    smtp_sink.delay = 0.1
    worker = start_processor(env, "--loop", "--sleep", "0.2")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 6, timeout=60, interval=0.02)
        # Let the standby catch up, then make it lag: what follows reaches the primary only.
        time.sleep(0.5)
        link.freeze()
        lag_starts = len(smtp_sink.messages)
        assert wait_until(lambda: len(smtp_sink.messages) >= lag_starts + 6, 30, 0.02)
        # The primary's host dies; the endpoint moves to the promoted standby.
        primary.stop(mode="immediate")
        endpoint.cut()
        endpoint.point_to(standby.port)
        standby.promote()
        promoted = time.monotonic()
        finished = wait_until(lambda: job_status(standby, "bizcards") == "completed", 90)
        stall = time.monotonic() - promoted
    finally:
        worker.send_signal(signal.SIGTERM)
        _stdout, stderr = worker.communicate(timeout=30)

    assert finished, f"the job did not finish on the promoted standby: {stderr[-2000:]}"
    assert stall < 60, f"the company waited {stall:.0f} s after the failover"
    assert "Traceback" not in stderr
    log = (tmp_path / "app.log").read_text()
    assert "The database changed since the last run" in log
    assert "replicated asynchronously" in log

    # Nobody got an email twice, though the standby lost the marks of some that went out.
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)), "a recipient got two emails"
    rows = items(standby, "bizcards")
    unknown = {
        EmailJobKind.interrupted_reason,
        EmailJobKind.failover_reason,
    }
    for email, status, reason in rows:
        if email in recipients:
            # Sent: completed, or failed as unknown where the standby lost its mark.
            assert status == "completed" or reason in unknown, (email, status, reason)
        else:
            # Not sent: never completed; failed as unknown where the lag rule kept it.
            assert status == "failed" and reason in unknown, (email, status, reason)
    lost_marks = [e for e, status, reason in rows if e in recipients and status != "completed"]
    assert lost_marks, "the lag lost no mark: the test did not make the standby lag"
