"""Slow clients against the documented set-up (docs/operations.md, "Running in
production"): gunicorn started with gunicorn.conf.py, behind nginx started with
deploy/nginx.conf (its listen addresses, certificate and paths substituted for this test,
everything else as shipped).

A slowloris client opens a connection and sends half of its headers, then nothing. With
nginx in front, twenty of them leave a normal request's answer as fast as ever: nginx
holds them, gunicorn never sees them. Without it (the control case) the same clients
hold every gunicorn thread and a normal request waits, which is why the docs put the
proxy first. Needs Debian's nginx (`apt-get install nginx-light`); skipped without it
unless CI=true.
"""

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes.config.test_production_like import environment

ROOT = Path(__file__).resolve().parents[3]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
SLOW_CLIENTS = 20

pytestmark = pytest.mark.skipif(
    NGINX is None and os.environ.get("CI") != "true",
    reason="needs Debian's nginx (apt-get install nginx-light)",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def stop(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn with gunicorn.conf.py: one worker of four threads (a small host's share),
    on a migrated production-like SQLite database."""
    port = free_port()
    env = environment(
        tmp_path,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="false",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="4",
        GUNICORN_TIMEOUT="60",
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        assert timed_get(port, timeout=10)[0] == 200  # warm: the app is imported
        yield port
    finally:
        stop(process)


def nginx_config(tmp_path, upstream_port, port):
    """deploy/nginx.conf as shipped, with this test's ports and paths, in a main config
    that runs as this user with its files under tmp_path."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    site = re.sub(r"listen \[::\]:\d+[^;]*;\n", "", site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    site = re.sub(r"listen 443 ssl[^;]*;", f"listen 127.0.0.1:{port};", site)
    site = re.sub(r"\s*ssl_certificate\S* [^;]*;", "", site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    site = site.replace("/srv/bizcards", str(ROOT))
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(
        f"    {name}_temp_path {tmp_path}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{ worker_connections 512; }}\n"
        f"http {{\n    access_log off;\n{temp}\n"
        f"    include {ROOT}/deploy/nginx-log-format.conf;\n"
        f"    include {tmp_path}/site.conf;\n}}\n"
    )
    return tmp_path / "nginx.conf"


@pytest.fixture
def nginx(tmp_path, gunicorn):
    port = free_port()
    config = nginx_config(tmp_path, gunicorn, port)
    checked = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([NGINX, "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)


def timed_get(port, timeout):
    """(status, seconds) of a normal request for the sign-in page; status None when no
    answer came within `timeout`."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/accounts/login/", headers={"Host": "127.0.0.1"})
        status = connection.getresponse().status
    except (TimeoutError, ConnectionError):
        status = None
    finally:
        connection.close()
    return status, time.monotonic() - started


def slowloris(port, count):
    """`count` connections that each send half a header block and then wait."""
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        sockets.append(s)
    time.sleep(1)  # the server has read what there is
    return sockets


def test_slow_clients_do_not_stall_others_behind_nginx(nginx, gunicorn):
    assert timed_get(nginx, timeout=10)[0] == 200
    sockets = slowloris(nginx, SLOW_CLIENTS)
    try:
        answers = [timed_get(nginx, timeout=5) for _ in range(5)]
    finally:
        for s in sockets:
            s.close()
    assert [status for status, _seconds in answers] == [200] * 5
    assert max(seconds for _status, seconds in answers) < 2.0, answers


def test_without_the_proxy_the_same_clients_stall_gunicorn(gunicorn):
    """The control case: gunicorn alone (what the docs say not to do)."""
    sockets = slowloris(gunicorn, SLOW_CLIENTS)
    try:
        status, seconds = timed_get(gunicorn, timeout=4)
    finally:
        for s in sockets:
            s.close()
    assert status is None, f"answered {status} in {seconds:.1f} s"
