"""A private PostgreSQL server in a temporary directory, for tests that stop and start it.

The shared server on 5432 serves other test sessions and must never be restarted, so a
test that restarts PostgreSQL under a worker brings its own: Debian's initdb and pg_ctl,
trust authentication, loopback only, a free port. initdb refuses to run as root, so as
root the binaries run as the `postgres` OS user.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.smtp_sink import free_port


def find_bin_dir():
    """The newest Debian PostgreSQL bin directory, or None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def unavailable_reason():
    """Why a private server cannot be started here, or None if it can."""
    if find_bin_dir() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` OS user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to run initdb as `postgres`"
    return None


class PrivatePostgres:
    def __init__(self):
        self.bin_dir = find_bin_dir()
        self.port = free_port()
        # Not pytest's tmp_path: its parent is private to root and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="bizcards-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres")

    def _run(self, tool, *args):
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=self.root)

    def init(self):
        self._run(
            "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        return self

    def start(self):
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
            "-w", "start",
        )  # fmt: skip
        return self

    def stop(self, mode="fast"):
        """Fast shutdown: open sessions are ended at once, as in a restart for an upgrade;
        "immediate": the server dies on the spot, as its host would."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    @classmethod
    def standby_of(cls, primary, via_port):
        """A streaming standby of `primary`, copied with pg_basebackup and replicating
        through `via_port` (a TcpProxy to the primary, so the link can lag); not started."""
        standby = cls()
        standby._run(
            "pg_basebackup", "-D", str(standby.data_dir), "-h", "127.0.0.1", "-p", str(via_port),
            "-U", "postgres", "-X", "stream", "-R", "--no-sync",
        )  # fmt: skip
        return standby

    def promote(self):
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "promote")

    def restart(self, down_seconds):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self):
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database="postgres"):
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/{database}", autocommit=True
        )

    def create_database(self, name, template=None):
        with self.connect() as conn:
            sql = f'CREATE DATABASE "{name}"'
            if template:
                sql += f' TEMPLATE "{template}"'
            conn.execute(sql)
