"""The same bulk email through Celery, the stack a Django team would pick instead.

Builds a separate virtualenv in var/bench/celery-venv (Django at this project's pin,
Celery with the Redis broker, django-celery-email and gevent from PyPI; nothing of it is
imported by the project). For each worker set-up (prefork -c 2 and -c 4, threads -c 16,
gevent -c 16 by default) it starts a Celery worker on Redis database 15 (flushed), waits
until it is ready, then queues N card-sized emails (HTML + text + a .vcf attachment,
~4.4 KB, as bench_post_office.py builds them) through django-celery-email's backend in
chunks of 10 (one task, and one SMTP connection, per chunk) and times from the first
message queued until the sink (bench/latency_sink.py) has received the Nth.

    .venv/bin/python bench/bench_celery.py [--emails 2000] [--latency-ms 20]
    .venv/bin/python bench/bench_celery.py --pools prefork:4 gevent:16

Celery keeps no per-recipient state: its figures are for sending only. It prints
emails/second and CPU milliseconds per email of the worker (its pool's children
included, its start-up left out), of Redis and of the sink.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from latency_sink import running_sink  # bench/ is this script's own folder

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "bench"
VENV = WORK / "celery-venv"
BROKER = "redis://127.0.0.1:6379/15"
DEFAULT_POOLS = ["prefork:2", "prefork:4", "threads:16", "gevent:16"]

SETTINGS = """
import os
SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = ["djcelery_email"]
DATABASES = {}
EMAIL_BACKEND = "djcelery_email.backends.CeleryEmailBackend"
CELERY_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CELERY_EMAIL_CHUNK_SIZE = 10
EMAIL_HOST, EMAIL_PORT = "127.0.0.1", int(os.environ["CELERY_BENCH_SMTP_PORT"])
CELERY_BROKER_URL = os.environ["CELERY_BENCH_BROKER"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
"""

APP = """
import os
from celery import Celery
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "celery_settings")
app = Celery("bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

QUEUE = """
import sys, time, django
django.setup()
import celery_app  # noqa: F401  (the app django-celery-email's task is bound to)
from django.core.mail import EmailMultiAlternatives, get_connection
n = int(sys.argv[1])
html = "<html><body>" + "<p>Ada Lovelace, Head of Engineering, Acme</p>" * 50 + "</body></html>"
text = "Ada Lovelace, Head of Engineering, Acme\\n" * 50
vcard = "BEGIN:VCARD\\r\\nVERSION:4.0\\r\\nFN:Ada Lovelace\\r\\nTEL:+44 20 7946 0001\\r\\nEND:VCARD\\r\\n" * 4
messages = []
for i in range(n):
    message = EmailMultiAlternatives("Bench", text, "cards@example.com", [f"r{i}@example.net"])
    message.attach_alternative(html, "text/html")
    message.attach("card.vcf", vcard, "text/vcard")
    messages.append(message)
print(repr(time.time()), flush=True)
get_connection().send_messages(messages)
"""


def ensure_venv():
    if (VENV / ".ready").exists():
        return
    django_pin = re.search(r"^Django==\S+", (ROOT / "requirements.txt").read_text(), re.M)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "pip"), "install", "--quiet"]
    # hiredis: redis-py's C reply parser, which its documentation recommends for speed.
    packages = [django_pin.group(0), "celery[redis]", "hiredis", "django-celery-email", "gevent"]
    subprocess.run([*pip, *packages], check=True)
    (VENV / ".ready").touch()


def flush_broker():
    subprocess.run(["redis-cli", "-n", "15", "flushdb"], check=True, capture_output=True)


def redis_cpu_seconds():
    info = subprocess.run(
        ["redis-cli", "info", "cpu"], check=True, capture_output=True, text=True
    ).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def tree_cpu_seconds(pid):
    """CPU seconds used so far by a process and its living descendants (from /proc), so
    the worker's start-up, spent before it was ready, is left out."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree = {pid}
    for _ in range(3):  # the worker, its pool's children, anything they start
        tree |= {child for child, (parent, _) in parents.items() if parent in tree}
    ticks = sum(parents[member][1] for member in tree if member in parents)
    return ticks / os.sysconf("SC_CLK_TCK")


def run_pool(pool, concurrency, emails, latency_ms, env):
    """One worker set-up: returns (emails/s, worker CPU s, Redis CPU s)."""
    flush_broker()
    done_file = Path(tempfile.mkdtemp(prefix="celery-bench-")) / "done"
    with running_sink(latency_ms, expect=emails, done_file=done_file) as port:
        env = dict(env, CELERY_BENCH_SMTP_PORT=str(port))
        celery = [str(VENV / "bin" / "celery"), "-A", "celery_app", "worker"]
        # Without the cluster chatter a lone worker does not need (the flags Celery's
        # optimisation guide suggests for throughput).
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        worker = subprocess.Popen(
            [*celery, "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO"]
            + quiet,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in worker.stderr:
            if "ready." in line:
                break
        # Its log (two lines per task) is read on, or a full pipe would stall it.
        draining = threading.Thread(target=worker.stderr.read, daemon=True)
        draining.start()
        redis_before = redis_cpu_seconds()
        worker_before = tree_cpu_seconds(worker.pid)
        queue = subprocess.run(
            [str(VENV / "bin" / "python"), str(WORK / "celery_queue.py"), str(emails)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        started = float(queue.stdout.split()[0])
        deadline = time.time() + 600
        while not done_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        finished = float(done_file.read_text()) if done_file.exists() else None
        redis_cpu = redis_cpu_seconds() - redis_before
        worker_cpu = tree_cpu_seconds(worker.pid) - worker_before
        worker.send_signal(signal.SIGTERM)
        worker.wait()
        draining.join()
        worker.stderr.close()
    if finished is None:
        return None, worker_cpu, redis_cpu
    return emails / (finished - started), worker_cpu, redis_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--pools", nargs="+", default=DEFAULT_POOLS, help="pool:concurrency, e.g. gevent:16"
    )
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    ensure_venv()
    (WORK / "celery_settings.py").write_text(textwrap.dedent(SETTINGS))
    (WORK / "celery_app.py").write_text(textwrap.dedent(APP))
    (WORK / "celery_queue.py").write_text(textwrap.dedent(QUEUE))
    env = dict(
        os.environ,
        PYTHONPATH=str(WORK),
        DJANGO_SETTINGS_MODULE="celery_settings",
        CELERY_BENCH_BROKER=BROKER,
    )
    print(f"sink latency: {args.latency_ms:g} ms per reply; {args.emails} emails, chunks of 10")
    best = None
    for spec in args.pools:
        pool, concurrency = spec.split(":")
        rate, worker_cpu, redis_cpu = run_pool(
            pool, int(concurrency), args.emails, args.latency_ms, env
        )
        if rate is None:
            print(f"celery {spec}: did not deliver {args.emails} emails in 10 minutes")
            continue
        print(
            f"celery {spec}: {rate:.0f} emails/s; CPU ms per email: worker "
            f"{1000 * worker_cpu / args.emails:.2f}, redis {1000 * redis_cpu / args.emails:.2f}"
        )
        best = max(best or (0, ""), (rate, spec))
    if best:
        print(f"best celery set-up: {best[1]} at {best[0]:.0f} emails/s")


if __name__ == "__main__":
    main()
