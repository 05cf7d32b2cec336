"""passenger_wsgi.py, as Passenger loads it: a fresh interpreter started in another
directory, importing the file by path, with settings only in `.env`."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

LOADER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("passenger_wsgi", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from django.conf import settings
from django.test import Client
response = Client().get("/healthz")
print(callable(module.application), settings.SITE_URL, settings.SETTINGS_MODULE, response.status_code)
"""


def test_passenger_wsgi_loads_env_and_exposes_the_application(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(
        ROOT,
        app,
        ignore=shutil.ignore_patterns(".venv*", "var", ".git", "node_modules", "__pycache__"),
    )
    (app / ".env").write_text(
        "DJANGO_SECRET_KEY=from-dot-env-0123456789-0123456789-0123456789-abcdef\n"
        "SITE_URL=https://cards.passenger.example\n"
        f"DATABASE_URL=sqlite:///{tmp_path / 'db.sqlite3'}\n"
        f"VAR_DIR={tmp_path / 'var'}\n"
        "DJANGO_ALLOWED_HOSTS=testserver\n"
        "DJANGO_SECURE_SSL_REDIRECT=false\n"
    )
    # Nothing from this test session may leak in: only PATH and the .env file.
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(app / "passenger_wsgi.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The app answers: 503, since this fresh database has no processor runs (nor tables).
    assert done.stdout.split() == [
        "True",
        "https://cards.passenger.example",
        "config.settings",
        "503",
    ]
