"""The wallet commands as a real process shows them (the in-process cases are in
tests/wallet/test_wallet_services.py)."""

import subprocess
import sys

from django.conf import settings as django_settings


def test_process_command_help_is_accurate():
    result = subprocess.run(
        [sys.executable, "manage.py", "process_wallet_jobs", "--help"],
        capture_output=True, text=True, cwd=django_settings.BASE_DIR,
    )  # fmt: skip
    assert result.returncode == 0
    assert "default 10 cards" in " ".join(result.stdout.split())
