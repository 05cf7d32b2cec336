"""/healthz and `check_processors` in real processes, against a database that does not
answer (the in-process cases are in tests/monitoring/test_health.py)."""

import subprocess
import sys

import pytest

from tests.conftest import MANAGE

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("target", ["healthz", "command"])
def test_a_database_that_does_not_answer_fails_both(target, tmp_path):
    """Real processes against a PostgreSQL address where nothing listens."""
    from tests.conftest import subprocess_env

    env = subprocess_env(tmp_path, 1)
    env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:9/none"
    if target == "command":
        done = subprocess.run(
            [sys.executable, MANAGE, "check_processors"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr.startswith("FAIL: The database did not answer (OperationalError).")
        return
    code = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz');"
        "print(r.status_code, r.content.decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == (
        '503 {"status": "fail", "database": "unreachable", "schema": "unknown", "processors": {}}'
    ), done.stderr[-2000:]
