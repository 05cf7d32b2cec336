"""A real `manage.py process_wallet_jobs` process that stalls mid-push (SIGSTOP while the
loopback APNs holds its answer) is released by another run's stuck rule, which settles
its items by the wallet kind's policy (redo: the interrupted card is pushed again); when
the stalled process resumes (SIGCONT) and gets its answer, its fenced writes change
nothing. Runs on SQLite, PostgreSQL and MariaDB alike (committed data, so transactional).
"""

import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings as django_settings

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from tests.conftest import MANAGE, DatabaseTime, subprocess_env, wait_until
from tests.wallet.test_wallet_network_faults import cards_with_devices, token_for
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem, CardWalletState
from wallet.services import create_wallet_job

pytestmark = pytest.mark.django_db(transaction=True)


def worker_env(tmp_path):
    """The test's Apple settings and database for a manage.py subprocess."""
    names = [name for name in dir(django_settings) if name.startswith(("APPLE_", "APNS_"))]
    apple = {name: str(getattr(django_settings, name)) for name in names}
    # No mail is sent: the SMTP port is never used.
    return subprocess_env(
        tmp_path,
        25,
        **{
            **apple,
            "GOOGLE_WALLET_ISSUER_ID": "",
            # Far longer than the stall lasts in real time: the held answer, not a
            # timeout, is what the process finds when it resumes.
            "APNS_TIMEOUT": "120",
        },
    )


def snapshot(job):
    return (
        BulkWalletApiJob.objects.filter(pk=job.pk).values().get(),
        list(BulkWalletApiJobItem.objects.filter(job=job).order_by("id").values()),
        list(CardWalletState.objects.order_by("id").values()),
    )


def test_a_worker_stalled_mid_push_is_released_and_its_late_writes_change_nothing(
    apns_server, company, tmp_path
):
    cards = cards_with_devices(company, 3)
    held = token_for(cards[0])
    answer = apns_server.hold(held)
    job = create_wallet_job(company)
    first = BulkWalletApiJobItem.objects.filter(job=job).order_by("id").first()

    worker = subprocess.Popen(
        [sys.executable, MANAGE, "process_wallet_jobs"],
        env=worker_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped = False
    try:
        assert wait_until(lambda: held in apns_server.received_tokens(), 60, interval=0.05)
        worker.send_signal(signal.SIGSTOP)
        stopped = True
        first.refresh_from_db()
        assert (first.status, first.attempts) == (Status.PROCESSING, 1)

        # Eleven minutes on, the stalled run's heartbeat is stale: the next run releases
        # its claim, redoes the interrupted card (pushed again: at least once) and
        # finishes the job.
        DatabaseTime().shift(timedelta(minutes=11))
        summary = run_once(get_kind("wallet"))
        assert summary.claims_released == 1
        assert summary.items_succeeded == 3
        first.refresh_from_db()
        assert (first.status, first.attempts) == (Status.COMPLETED, 2)
        assert [entry["reason"] for entry in first.attempt_log][:1] == ["Interrupted; done again"]
        job.refresh_from_db()
        assert (job.status, job.succeeded_items, job.claim_token) == (Status.COMPLETED, 3, None)
        assert apns_server.received_tokens().count(held) == 2
        settled = snapshot(job)

        # The stalled process gets its answer and resumes: its claim is gone.
        answer.set()
        worker.send_signal(signal.SIGCONT)
        stopped = False
        out, err = worker.communicate(timeout=60)
    finally:
        answer.set()
        if stopped:
            worker.send_signal(signal.SIGCONT)
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    assert worker.returncode == 0, err[-2000:]
    assert held in apns_server.answered_tokens()  # the first push was answered too
    assert snapshot(job) == settled
    log = (tmp_path / "app.log").read_text()
    assert "claim lost before recording item" in log
    # It stopped there: the cards after the interrupted one were pushed once, by the run
    # that took over.
    assert apns_server.received_tokens().count(token_for(cards[1])) == 1
    assert apns_server.received_tokens().count(token_for(cards[2])) == 1
