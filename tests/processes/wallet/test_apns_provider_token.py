"""The APNs provider token shared by two cron runs (real `process_wallet_jobs`
processes); the in-process cases are in tests/wallet/test_apns_provider_token.py."""

import subprocess
import sys

import pytest

from tests.conftest import MANAGE, subprocess_env
from tests.wallet.test_apns_provider_token import bearers
from tests.wallet.test_wallet_jobs import register_device
from wallet.models import ApnsProviderToken
from wallet.services import create_wallet_job


@pytest.mark.django_db(transaction=True)
def test_two_cron_runs_send_the_same_token(apns_server, apple, company, card, tmp_path):
    register_device(card, "a" * 64)
    names = ("APPLE_PASS_CERT", "APPLE_PASS_KEY", "APPLE_WWDR_CERT", "APPLE_TEAM_ID",
             "APPLE_PASS_TYPE_ID", "APPLE_WEB_SERVICE_URL", "APNS_BASE_URL", "APNS_KEY_FILE",
             "APNS_KEY_ID", "APNS_CA_FILE")  # fmt: skip
    env = subprocess_env(tmp_path, 25, **{name: str(getattr(apple, name)) for name in names})
    for title in ("CTO", "CEO"):
        card.job_title = title  # something to push in each run
        card.save()
        create_wallet_job(company, cards=[card])
        done = subprocess.run(
            [sys.executable, MANAGE, "process_wallet_jobs"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]

    first, second = bearers(apns_server)
    assert first == second
    assert ApnsProviderToken.objects.count() == 1
