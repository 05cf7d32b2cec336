"""A production-like deployment, each case in fresh processes: DEBUG off, a secret key, an
https SITE_URL and every setting the production docs ask for (docs/operations.md,
docs/configuration.md). PRODUCTION_LIKE is the one place that lists them: a setting the
docs come to require in production goes there.

- `migrate` then `check --deploy` report nothing; load_demo is refused, and once forced,
  `check --deploy` warns of its public password (cards.W001);
- the files the app creates (the SQLite database, the log) are the owner's and group's;
- the tenancy tests (tests/web/test_access.py) pass in this environment.
"""

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PRODUCTION_LIKE = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "cards.example.com",
    "SITE_URL": "https://cards.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "DJANGO_CLIENT_IP_HEADER": "HTTP_X_REAL_IP",
    # Card emails from a domain of the operator's, signed by its relay (docs/sending-domain.md).
    "DEFAULT_FROM_EMAIL": "Business Cards <cards@cards-platform.de>",
    "EMAIL_RELAY_SIGNS": "1",
    "ADMINS": "Ops <ops@cards.example.com>",
    # Bounces read back (docs/bounces.md): without it check --deploy warns (emails.W005).
    "BOUNCE_ADDRESS": "bounces@bounce.cards-platform.de",
}


def environment(tmp_path, **variables):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "ANYMAIL_", "BULKJOBS_"))
        and name not in {"DATABASE_URL", "VAR_DIR", "LOG_FILE", "SITE_URL", "FILE_UMASK"}
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp_path / "var"))
    env.update(PRODUCTION_LIKE)
    env.update(variables)
    return env


def run(tmp_path, *args, **variables):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def migrated(tmp_path):
    # A umask that would leave everything world-readable: the app's own must win.
    result = subprocess.run(
        ["sh", "-c", f"umask 022 && exec {sys.executable} manage.py migrate --noinput"],
        cwd=ROOT,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_deploy_check_is_clean_then_warns_of_a_forced_demo(migrated):
    result = run(migrated, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout

    refused = run(migrated, "manage.py", "load_demo")
    assert refused.returncode != 0
    assert "load_demo is for development" in refused.stderr

    forced = run(migrated, "manage.py", "load_demo", "--allow-production")
    assert forced.returncode == 0, forced.stderr
    result = run(migrated, "manage.py", "check", "--deploy")
    assert "cards.W001" in result.stderr
    assert "admin, member, operator" in result.stderr


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_the_files_the_app_creates_are_not_world_readable(migrated):
    var = migrated / "var"
    database, log = var / "db.sqlite3", var / "log" / "app.log"
    assert database.exists() and log.exists()
    for path in [database, log, *var.glob("db.sqlite3-*")]:
        assert mode(path) & 0o007 == 0, (path, oct(mode(path)))
        assert mode(path) & 0o600 == 0o600
    for directory in [var, var / "log"]:
        assert mode(directory) & 0o007 == 0, (directory, oct(mode(directory)))


def test_the_tenancy_tests_pass_production_like(tmp_path):
    """tests.settings only turns the HTTPS switches off (the test client speaks plain
    HTTP); everything else is as PRODUCTION_LIKE sets it."""
    result = run(
        tmp_path,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/web/test_access.py",
        "tests/web/test_next_links.py",
        "tests/web/test_cache_control.py",
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
