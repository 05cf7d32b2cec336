"""New code on an old schema, in real processes: a fresh SQLite database migrated back one
migration, as when the new release starts before `manage.py migrate` ran. Each command
exits with one line saying what to do and exit code 3, not a traceback; /healthz says
the schema is behind; after `migrate` all is well. (In process: tests/monitoring/
test_schema_behind.py.)
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import MANAGE

# Back to bulkjobs 0004: 0005 adds ProcessorRun.companies_with_work, which every
# processing run writes, so a run's first statements fail. Later migrations (of bulkjobs
# and of the apps that depend on it) are unapplied too; 0005 comes first.
PREVIOUS = ("bulkjobs", "0004")
LINE = re.compile(
    r"The database schema is behind this release: run `manage.py migrate` "
    r"\(\d+ unapplied migrations?: bulkjobs\.0005_processorrun_companies_with_work\b.*\)\.$"
)


def environment(folder):
    return dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        LOG_FILE=str(folder / "app.log"),
        LOG_CONSOLE_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )


def manage(env, *args):
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def old_schema(tmp_path_factory):
    """The folder of a database one migration behind the code."""
    folder = tmp_path_factory.mktemp("old-schema")
    env = environment(folder)
    for args in (["migrate"], ["migrate", *PREVIOUS]):
        done = manage(env, *args, "--verbosity", "0")
        assert done.returncode == 0, done.stderr[-2000:]
    return folder


def copy_of(folder, tmp_path):
    shutil.copy(folder / "db.sqlite3", tmp_path / "db.sqlite3")
    return environment(tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["process_email_jobs"],
        ["process_wallet_jobs"],
        ["process_email_jobs", "--loop"],
        ["process_wallet_jobs", "--until-empty"],
        ["check_processors"],
        ["prune_jobs"],
    ],
    ids=" ".join,
)
def test_a_command_exits_with_one_line_and_exit_code_3(old_schema, tmp_path, command):
    env = copy_of(old_schema, tmp_path)
    done = manage(env, *command)
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 3, output
    assert len(output) == 1, output
    assert LINE.search(output[0]), output
    assert " ERROR " in output[0]
    # cron throws the terminal away: the log file has the line.
    assert LINE.search((tmp_path / "app.log").read_text().strip().splitlines()[-1])


def test_healthz_says_the_schema_is_behind(old_schema, tmp_path):
    env = copy_of(old_schema, tmp_path)
    code = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz');"
        "print(r.status_code, r.json()['database'], r.json()['schema'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "503 ok behind", done.stderr[-2000:]


def test_after_migrate_the_commands_run(old_schema, tmp_path):
    env = copy_of(old_schema, tmp_path)
    assert manage(env, "migrate", "--verbosity", "0").returncode == 0
    done = manage(env, "process_email_jobs")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("email: served 0 companies")
