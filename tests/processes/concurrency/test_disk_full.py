"""SQLite on a full disk: a worker waits for space instead of crash-looping, writes what it
knew once space returns, and goes on within seconds; nobody gets an email twice.

The database and the log file live on a small tmpfs of their own (as on a small VPS
disk), filled up while a `process_email_jobs --loop` worker is mid-batch. Mounting needs
root; elsewhere the test is skipped with the reason (with CI=true it fails instead).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import MANAGE, start_processor, wait_until

FILESYSTEM_MB = 16


def mount_reason():
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    return None


@pytest.fixture
def small_disk():
    reason = mount_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the disk-full test: {reason}")
        pytest.skip(reason)
    mount_point = Path(tempfile.mkdtemp(prefix="bizcards-small-disk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_MB}m", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def fill(disk):
    """Take every free byte of the disk with a file; returns it (delete it to free)."""
    filler = disk / "filler"
    # Unbuffered: a buffered file keeps the last chunk that did not fit and fails again
    # when it is closed.
    with open(filler, "wb", buffering=0) as out:
        chunk = b"\0" * (64 * 1024)
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    return filler


def manage(env, *args):
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def statuses(database):
    with sqlite3.connect(database) as conn:
        return dict(
            conn.execute(
                "SELECT status, count(*) FROM bulk_email_job_items GROUP BY status"
            ).fetchall()
        )


def finished(database):
    counts = statuses(database)
    return sum(counts.values()) - counts.get("pending", 0) - counts.get("processing", 0)


def failed_reasons(database):
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT id, reason FROM bulk_email_job_items WHERE status = 'failed'"
        ).fetchall()


def test_a_worker_waits_out_a_full_disk_and_goes_on(small_disk, smtp_sink):
    database = small_disk / "db.sqlite3"
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{database}",
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_sink.port}",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        LOG_FILE=str(small_disk / "app.log"),
        LOG_CONSOLE_LEVEL="WARNING",
        BULKJOBS_EMAIL_COMPANY_RATE="0",
        PYTHONUNBUFFERED="1",
    )
    manage(env, "migrate", "--noinput")
    manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from cards.models import Company\n"
        "from tests.conftest import make_email_job\n"
        "make_email_job(Company.objects.create(name='Full', slug='full'), 120)\n",
    )
    smtp_sink.delay = 0.05
    worker = start_processor(env, "--loop", "--sleep", "0.2")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 10, timeout=30, interval=0.02)
        filler = fill(small_disk)
        time.sleep(6)  # the worker meets the full disk and waits
        alive_while_full = worker.poll() is None
        filler.unlink()
        freed = time.monotonic()
        done = wait_until(lambda: finished(database) >= 120, timeout=60)
        resumed_after = time.monotonic() - freed
    finally:
        worker.send_signal(signal.SIGTERM)
        _stdout, stderr = worker.communicate(timeout=30)

    assert alive_while_full, stderr[-2000:]
    # SQLite in WAL mode still takes the writes that fit in its log file's room, so a worker
    # may get a few items through while the disk is full; each is written all the same
    # (below: nothing unknown, nobody twice).
    assert done, f"the job did not finish after space returned: {statuses(database)}"
    assert statuses(database) == {"completed": 120}, (failed_reasons(database), stderr[-3000:])
    assert resumed_after < 60
    assert worker.returncode == 0
    assert "Traceback" not in stderr
    assert stderr.count("The database's disk is full (") == 1, stderr[-2000:]
    assert stderr.count("cannot be written") <= 1  # the log file, once
    # Every email once, and every outcome the worker knew written: nothing unknown.
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 120
    assert statuses(database) == {"completed": 120}
    with sqlite3.connect(database) as conn:
        assert conn.execute(
            "SELECT count(*) FROM bulk_email_jobs WHERE claim_token IS NOT NULL"
        ).fetchone() == (0,)
