"""Several OS processes running the email processor at once, and a run killed mid-batch.

These use real processes against the test database (committed data, so transactional
tests) and a real SMTP sink, on SQLite, PostgreSQL and MariaDB alike.
"""

import collections
import itertools
import re
import signal
import time
from datetime import timedelta

import pytest

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import DatabaseTime, make_email_job, start_processor, subprocess_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE_ID = re.compile(r"<bulk-email\.(\d+)\.(\d+)[.@]")


def test_four_processes_send_every_email_exactly_once(smtp_sink, tmp_path, email_kind):
    jobs = []
    for n in range(6):
        company = Company.objects.create(name=f"Company {n}", slug=f"company-{n}")
        for j in range(2):
            jobs.append(make_email_job(company, [f"r{r}.j{j}.c{n}@example.net" for r in range(40)]))
    total = sum(job.total_items for job in jobs)
    company_of_job = {job.pk: job.company_id for job in jobs}

    env = subprocess_env(tmp_path, smtp_sink.port)
    workers = [
        start_processor(env, "--loop", "--sleep", "0.2", "--batch-size", "7") for _ in range(4)
    ]
    try:
        finished = wait_until(lambda: not BulkEmailJob.objects.active().exists(), timeout=120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    assert finished, "jobs did not finish in time"
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-2000:]
        assert stdout.strip().endswith("Stopped.")
    # More than one process really did work.
    assert sum(1 for stdout, _ in outputs if "succeeded" in stdout) >= 2

    recipients = smtp_sink.recipients()
    assert len(recipients) == total
    assert len(set(recipients)) == total, "some recipient got two emails"
    assert BulkEmailJobItem.objects.filter(status=Status.COMPLETED).count() == total

    # One job per company at a time, taking turns batch by batch: a company's messages
    # come in runs of one job's batch (7 here, fewer when the pace trims a batch), never
    # item by item from two jobs at once, and both jobs of a company make headway
    # together rather than one after the other.
    by_company = collections.defaultdict(list)
    for received in sorted(smtp_sink.messages, key=lambda m: m.at):
        job_id = int(MESSAGE_ID.search(received.message["Message-ID"]).group(1))
        by_company[company_of_job[job_id]].append(job_id)
    for sequence in by_company.values():
        runs = [len(list(run)) for _job, run in itertools.groupby(sequence)]
        # The last run may hold several batches: the other job had finished. Elsewhere a
        # job's run is one batch, or two when the other job's turn came to nothing (four
        # processes share the company's pace: another took its last token of the minute
        # between the check and the batch, so that turn sent nothing).
        assert max(runs[:-1]) <= 2 * 7, f"the company's jobs did not take turns: {runs}"
        assert len(runs) > 2, "the company's jobs did not take turns"


def test_a_run_killed_mid_batch_sends_nothing_twice(smtp_sink, tmp_path, email_kind):
    company = Company.objects.create(name="Crashy", slug="crashy")
    job = make_email_job(company, 30)
    smtp_sink.delay = 0.15
    env = subprocess_env(tmp_path, smtp_sink.port)
    victim = start_processor(env, "--batch-size", "50")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 4, timeout=60, interval=0.02)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
    time.sleep(0.5)  # let the sink finish a DATA that was already accepted
    smtp_sink.delay = 0
    delivered_before = len(smtp_sink.messages)
    assert delivered_before < 30

    # Eleven minutes later the dead run's claim is stale and the next runs finish the job.
    DatabaseTime().shift(timedelta(minutes=11))
    for _run in range(3):
        run_once(email_kind)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED

    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)), "a recipient got two emails"
    items = list(job.items.all())
    assert {item.status for item in items} <= {Status.COMPLETED, Status.FAILED}
    failed = [item for item in items if item.status == Status.FAILED]
    assert len(failed) <= 1
    for item in failed:
        assert "not resent" in item.reason
    completed = {item.recipient_email for item in items if item.status == Status.COMPLETED}
    assert completed <= set(recipients)
    assert len(completed) + len(failed) == 30


def test_two_workers_sharing_a_20_per_second_mail_limit_stay_within_it(
    smtp_sink, tmp_path, email_kind
):
    for n in range(4):
        make_email_job(Company.objects.create(name=f"Company {n}", slug=f"company-{n}"), 150)
    env = subprocess_env(
        tmp_path, smtp_sink.port, EMAIL_RATE_LIMIT="20/s", BULKJOBS_EMAIL_COMPANY_RATE="0"
    )
    # No token can be taken before the workers start; the sink's times are on this clock.
    started = time.monotonic()
    workers = [
        start_processor(env, "--loop", "--sleep", "0.2", "--concurrency", "2") for _ in range(2)
    ]
    try:
        assert wait_until(lambda: smtp_sink.messages, timeout=60, interval=0.05)
        time.sleep(3)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    for worker, (_stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-2000:]
    times = sorted(m.at for m in smtp_sink.messages)
    # Every message that arrived was paid for between the start and its arrival: at most
    # a full bucket's burst (20) plus 20 a second. Without the limit they send hundreds.
    elapsed = times[-1] - started
    assert times[-1] - times[0] > 2
    assert 0 < len(times) <= 20 + 20 * elapsed + 2
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients))


def test_chaos_workers_with_concurrency_killed_at_random_send_at_most_once_and_lose_nothing(
    smtp_sink, tmp_path, email_kind
):
    import random

    jobs = []
    for n in range(6):
        company = Company.objects.create(name=f"Company {n}", slug=f"company-{n}")
        jobs.append(make_email_job(company, [f"r{r}.c{n}@example.net" for r in range(40)]))
    total = sum(job.total_items for job in jobs)
    smtp_sink.delay = 0.01
    env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
    args = ("--loop", "--sleep", "0.2", "--concurrency", "4", "--batch-size", "5")
    workers = [start_processor(env, *args) for _ in range(3)]
    kills = 0
    rng = random.Random()
    try:
        for _round in range(4):
            time.sleep(rng.uniform(0.5, 1.5))
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].communicate(timeout=30)
            kills += 1
            workers[victim] = start_processor(env, *args)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=60)
    time.sleep(0.5)  # let the sink finish a DATA that was already accepted
    smtp_sink.delay = 0

    # Past the stuck rule, one more run settles what the killed workers held and finishes.
    DatabaseTime().shift(timedelta(minutes=11))
    for _run in range(10):
        if not BulkEmailJob.objects.active().exists():
            break
        run_once(email_kind, concurrency=4, max_seconds=20)
    assert not BulkEmailJob.objects.active().exists()

    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)), "a recipient got two emails"
    items = BulkEmailJobItem.objects.all()
    assert {item.status for item in items} <= {Status.COMPLETED, Status.FAILED}
    completed = {i.recipient_email for i in items if i.status == Status.COMPLETED}
    assert completed <= set(recipients) and len(items) == total
    unknown = [i for i in items if i.status == Status.FAILED]
    for item in unknown:
        assert "delivery is unknown" in item.reason
    # At most one item in flight per connection, four connections per killed worker.
    assert len(unknown) <= 4 * kills
