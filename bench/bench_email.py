"""Bulk email throughput: N emails over several companies through the real processor.

Starts an SMTP sink in its own process on loopback (bench/latency_sink.py; with
--latency-ms it waits that long before every reply, like a relay one round trip away),
creates the jobs (timed: part of "end to end"), then either
- `--mode loop` (default): runs the processor's run loop in this process (what
  `process_email_jobs --loop` does) until every job is finished, and prints emails/second
  and queries per item; or
- `--mode cron`: starts one `manage.py process_email_jobs` process, as cron does every
  minute, and prints what that one run delivered and how many companies it served; or
- `--mode workers --processes N`: starts N `manage.py process_email_jobs --until-empty`
  processes at once (workers on one host, coordinated by the database) and prints
  emails/second from the jobs' creation until the last one exits (start-up included).

    .venv/bin/python bench/bench_email.py [--emails 10000] [--companies 10] [--latency-ms 20]
    .venv/bin/python bench/bench_email.py --mode cron --emails 2000 --companies 20 --latency-ms 80
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bizcards_bench .venv/bin/python bench/bench_email.py

Uses its own SQLite file var/bench.sqlite3 unless DATABASE_URL is set (that database is
flushed: never point it at real data).
"""

import argparse
import itertools
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

from cpu import server_cpu_seconds  # bench/ is this script's own folder
from latency_sink import running_sink

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--companies", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sink delay per reply")
    parser.add_argument("--mode", choices=["loop", "cron", "workers"], default="loop")
    parser.add_argument("--processes", type=int, default=2, help="with --mode workers")
    parser.add_argument(
        "--concurrency", type=int, help="companies at once (default BULKJOBS_EMAIL_CONCURRENCY)"
    )
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.smtp.EmailBackend"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["LOG_FILE"] = str(ROOT / "var" / "log" / "bench.log")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # A throwaway key: production settings refuse to start without one, and nothing a
    # benchmark signs outlives it.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    with running_sink(args.latency_ms) as port:
        os.environ["EMAIL_URL"] = f"smtp://127.0.0.1:{port}"
        run(args)


def run(args):
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created

    from bulkjobs.engine import run_once
    from bulkjobs.kinds import get_kind
    from cards.models import Company
    from emails import connections
    from emails.models import BulkEmailJob, BulkEmailJobItem
    from emails.smtp import reply_time
    from tests.conftest import make_email_job

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    time.sleep(0.5)  # the sink's start-up

    per_company = args.emails // args.companies
    started = time.perf_counter()
    for n in range(args.companies):
        company = Company.objects.create(name=f"Bench {n}", slug=f"bench-{n}")
        # One card sent to per_company generated addresses, as the tests queue them.
        make_email_job(company, per_company, subject="Bench", message="Hello")
    created = time.perf_counter()

    # Every connection's queries, the worker threads' too (next() on a count is atomic).
    queries = itertools.count()
    connects = itertools.count()

    def count(execute, sql, params, many, context):
        next(queries)
        return execute(sql, params, many, context)

    def count_on(sender, connection, **kwargs):
        # Once per connection object: a thread that reconnects keeps its wrappers.
        if count not in connection.execute_wrappers:
            connection.execute_wrappers.append(count)
        next(connects)

    connection_created.connect(count_on)

    total = per_company * args.companies
    print(
        f"database: {connection.vendor}; sink latency: {args.latency_ms:g} ms per reply; "
        f"concurrency: {args.concurrency or kind_default_concurrency()}; company rate: "
        f"{os.environ.get('BULKJOBS_EMAIL_COMPANY_RATE', 'default')}"
    )
    if args.mode == "cron":
        connection.close()
        run = subprocess.run(processor_command(args), capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - created
        sent = BulkEmailJobItem.objects.filter(status="completed").count()
        print(f"one cron run: {seconds:.1f} s, {sent}/{total} emails delivered")
        print(f"its summary: {run.stdout.strip()}")
        return

    if args.mode == "workers":
        connection.close()
        command = [*processor_command(args), "--until-empty", "--sleep", "0.2"]
        workers = [
            subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(args.processes)
        ]
        codes = [worker.wait() for worker in workers]
        seconds = time.perf_counter() - created
        sent = BulkEmailJobItem.objects.filter(status="completed").count()
        print(f"{args.processes} worker processes (exit codes {codes}): {sent}/{total} emails")
        print(f"delivery: {seconds:.2f} s = {sent / seconds:.0f} emails/s")
        print(
            f"end to end (creation included): {sent / (time.perf_counter() - started):.0f} emails/s"
        )
        return

    kind = get_kind("email")
    sent = 0
    own_cpu, database_cpu = process_cpu_seconds(), server_cpu_seconds()
    with connection.execute_wrapper(count):
        while BulkEmailJob.objects.active().exists():
            sent += run_once(kind, concurrency=args.concurrency).items_succeeded
    finished = time.perf_counter()
    own_cpu, database_cpu = process_cpu_seconds() - own_cpu, server_cpu_seconds() - database_cpu

    send_seconds = finished - created
    print(f"emails: {sent}/{total} over {args.companies} companies")
    print(f"job creation: {created - started:.2f} s")
    print(f"delivery: {send_seconds:.2f} s = {sent / send_seconds:.0f} emails/s")
    print(f"end to end (creation included): {sent / (finished - started):.0f} emails/s")
    print(f"queries per item: {next(queries) / max(sent, 1):.2f}")
    print(f"database connections opened: {next(connects)}")
    per_email = 1000 / max(sent, 1)
    print(
        f"CPU ms per email: this process {own_cpu * per_email:.2f}, "
        f"database server {database_cpu * per_email:.2f} (the sink's: below)"
    )
    print(f"connections: {len(connections.pool)} kept open at the end")
    seen = reply_time.seconds
    print(
        "relay's reply to the final '.' (least of the last 64): "
        + ("none seen" if seen is None else f"{1000 * seen:.1f} ms")
        + f"; items per lane: at least {get_kind('email').min_items_per_lane()}"
    )


def process_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def processor_command(args):
    """`manage.py process_email_jobs`, with the benchmark's --concurrency if given."""
    command = [sys.executable, str(ROOT / "manage.py"), "process_email_jobs"]
    return command + (["--concurrency", str(args.concurrency)] if args.concurrency else [])


def kind_default_concurrency():
    from bulkjobs.kinds import get_kind

    return get_kind("email").default_concurrency


if __name__ == "__main__":
    main()
