"""Four `process_wallet_jobs --loop` workers on one PostgreSQL/MariaDB test database.

Real processes, real claims: every card is synced exactly once (no crash happens here, so
at-least-once must come out as exactly once), each worker keeps one APNs connection, and
the database's one-claim-per-company rule keeps companies apart.
"""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection

from bulkjobs.models import Status
from cards.models import Company
from tests.conftest import make_cards
from tests.wallet.conftest import issue_first_pass
from wallet.models import AppleDeviceRegistration, BulkWalletApiJob, CardWalletState
from wallet.services import create_wallet_job

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

WORKERS = 4
SCHEMES = {"postgresql": "postgres", "mysql": "mysql"}


def database_url():
    db = connection.settings_dict
    user = quote(db["USER"] or "")
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"{SCHEMES[connection.vendor]}://{user}{password}@{db['HOST']}{port}/{db['NAME']}"


def worker_env(apple, tmp_path):
    env = dict(os.environ)
    names = [name for name in dir(apple) if name.startswith(("APPLE_", "APNS_"))]
    env.update({name: str(getattr(apple, name)) for name in names})
    env.update(
        DATABASE_URL=database_url(),
        GOOGLE_WALLET_ISSUER_ID="",
        LOG_FILE=str(tmp_path / "workers.log"),
        BULKJOBS_WALLET_BATCH_SIZE="10",
    )
    return env


def test_four_workers_sync_every_card_exactly_once(apns_server, tmp_path):
    if connection.vendor not in SCHEMES:
        pytest.skip(
            "needs PostgreSQL or MariaDB (set DATABASE_URL): SQLite serialises writers, so "
            "it cannot show claims racing"
        )
    companies = [Company.objects.create(name=f"Co {n}", slug=f"co-{n}") for n in range(6)]
    tokens = []
    for company in companies:
        for card in make_cards(company, 15, prefix=company.slug.replace("-", "")):
            state = CardWalletState.objects.for_card(card)
            issue_first_pass(state)
            token = f"{card.pk:064x}"
            AppleDeviceRegistration.objects.create(
                device_library_id=f"dev-{card.pk}", push_token=token, state=state
            )
            tokens.append(token)
        # So every card has something to push; an UPDATE rather than save(), which
        # would queue the cards in automatic jobs (tested in test_wallet_autosync.py).
        company.cards.update(job_title="Changed")
        create_wallet_job(company)
    env = worker_env(django_settings, tmp_path)
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "process_wallet_jobs", "--loop", "--sleep", "0.2"],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not BulkWalletApiJob.objects.filter(status__in=["pending", "processing"]).exists():
                break
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "Stopped." in out
    jobs = list(BulkWalletApiJob.objects.all())
    assert {job.status for job in jobs} == {Status.COMPLETED}
    assert sum(job.succeeded_items for job in jobs) == 90
    pushed = [request.token for request in apns_server.requests]
    assert sorted(pushed) == sorted(tokens)  # every device told once, none twice
    # One HTTP/2 connection per worker process, however many batches it ran.
    assert apns_server.connections <= WORKERS
    working = [out for out, _err in outputs if "succeeded" in out]
    assert len(working) >= 2, "expected the work to be shared between processes"
