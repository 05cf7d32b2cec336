"""The settings as a deployment sees them, each read in a fresh `manage.py` or Python process.

Settings are read once per process, so every case here starts a subprocess with exactly
the environment it describes (the test session's own DJANGO_* variables are removed).
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# A deployment behind an HTTPS proxy, with nothing but what the README asks for.
PRODUCTION = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "cards.example.com",
    "SITE_URL": "https://cards.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    # Card emails from a domain of the operator's, signed by its relay (docs/sending-domain.md).
    "DEFAULT_FROM_EMAIL": "Cards <cards@cards-platform.de>",
    "EMAIL_RELAY_SIGNS": "1",
    # Bounces read back (docs/bounces.md).
    "BOUNCE_ADDRESS": "bounces@bounce.cards-platform.de",
}


def clean_environment(tmp_path, **variables):
    """The current environment without the test session's settings, plus `variables`.

    A variable given as None is left out altogether (so `.env` may supply it).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DJANGO_") and name not in {"DATABASE_URL", "VAR_DIR", "LOG_FILE"}
    }
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["VAR_DIR"] = str(tmp_path / "var")
    # A developer's .env must not fill in what a case leaves out on purpose.
    env.setdefault("DJANGO_SECRET_KEY", "")
    env.update(variables)
    return {name: value for name, value in env.items() if value is not None}


def manage(tmp_path, *args, **variables):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(tmp_path, names, cwd=ROOT, **variables):
    """The values of the named settings in a process with this environment."""
    code = (
        "import json, config.settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {names!r}}}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=clean_environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_keeps_a_slow_password_hasher(tmp_path):
    """tests/settings.py hashes with MD5 to make users quickly; a deployment hashes with
    Django's default, PBKDF2."""
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.PASSWORD_HASHERS[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_environment(tmp_path, **PRODUCTION),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.contrib.auth.hashers.PBKDF2PasswordHasher"


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage(tmp_path, "check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    # The message says how to make a key and where to put it.
    assert "secrets.token_urlsafe" in result.stderr
    assert ".env" in result.stderr


def test_debug_starts_without_a_secret_key_and_deploy_check_flags_its_key(tmp_path):
    result = manage(tmp_path, "check", "--deploy", DJANGO_DEBUG="true", DJANGO_SECRET_KEY="")

    assert result.returncode == 0, result.stderr
    assert "security.W009" in result.stderr  # the development key is reported as weak
    assert "security.W018" in result.stderr  # and DEBUG itself


def test_deploy_check_is_clean_with_a_production_environment(tmp_path):
    result = manage(tmp_path, "check", "--deploy", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "WARNINGS" not in result.stderr, result.stderr
    assert "System check identified no issues" in result.stdout


def test_https_switches_default_on_in_production_and_off_with_debug(tmp_path):
    names = [
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SECURE_PROXY_SSL_HEADER",
    ]
    production = settings_of(tmp_path, names, **PRODUCTION)
    development = settings_of(tmp_path, names, DJANGO_DEBUG="true")

    assert production == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    assert development == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_each_https_switch_can_be_turned_off_from_the_environment(tmp_path):
    values = settings_of(
        tmp_path,
        ["SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD"],
        **PRODUCTION,
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SECURE_HSTS_PRELOAD="false",
    )

    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_PRELOAD": False,
    }


def test_a_malformed_proxy_ssl_header_is_refused_with_an_example(tmp_path):
    result = manage(
        tmp_path, "check", **{**PRODUCTION, "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    )

    assert result.returncode != 0
    assert "HTTP_X_FORWARDED_PROTO,https" in result.stderr


def test_var_dir_set_in_dot_env_moves_the_files_under_it(tmp_path):
    """`.env` beside manage.py is read before VAR_DIR, so VAR_DIR can live there too."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "config", checkout / "config", ignore=shutil.ignore_patterns("__pycache__")
    )
    var_dir = tmp_path / "elsewhere"
    (checkout / ".env").write_text(
        f"VAR_DIR={var_dir}\nDJANGO_SECRET_KEY=from-dot-env-{'x' * 50}\n"
    )

    values = settings_of(
        tmp_path,
        ["VAR_DIR", "DATABASES", "LOG_FILE", "EMAIL_FILE_PATH", "STATIC_ROOT"],
        cwd=checkout,
        VAR_DIR=None,
        DJANGO_SECRET_KEY=None,
    )

    assert values["VAR_DIR"] == str(var_dir)
    assert values["DATABASES"]["default"]["NAME"] == str(var_dir / "db.sqlite3")
    assert values["LOG_FILE"] == str(var_dir / "log" / "app.log")
    assert values["EMAIL_FILE_PATH"] == str(var_dir / "sent-emails")
    assert values["STATIC_ROOT"] == str(var_dir / "static")
    assert (var_dir / "log").is_dir()


def test_deploy_check_warns_about_what_keeps_card_emails_out_of_the_inbox(tmp_path):
    environment = {**PRODUCTION, "SITE_URL": "http://localhost:8000"}
    del environment["DEFAULT_FROM_EMAIL"], environment["EMAIL_RELAY_SIGNS"]
    result = manage(tmp_path, "check", "--deploy", **environment)

    assert result.returncode == 0, result.stderr
    assert "emails.W002" in result.stderr  # SITE_URL on http://localhost
    assert "emails.W003" in result.stderr  # From at example.com
    assert "emails.W004" in result.stderr  # nobody says who signs


def test_empty_email_variables_do_not_override_email_url(tmp_path):
    """`EMAIL_HOST_USER=` in .env used to replace EMAIL_URL's login with ""."""
    names = ["EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS"]
    url = "smtp+tls://mailer:s3cret@relay.example.net:587"
    empty = dict.fromkeys(names, "")
    assert settings_of(tmp_path, names, EMAIL_URL=url, **empty, **PRODUCTION) == {
        "EMAIL_HOST": "relay.example.net",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": "s3cret",
        "EMAIL_USE_TLS": True,
    }
    # A value still overrides its part.
    overridden = settings_of(
        tmp_path, ["EMAIL_HOST_USER"], EMAIL_URL=url, EMAIL_HOST_USER="other", **PRODUCTION
    )
    assert overridden == {"EMAIL_HOST_USER": "other"}
