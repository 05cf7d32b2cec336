"""This project beside django-post-office and Celery, on one sink, at several latencies.

For each reply latency (default 0, 20 and 80 ms) runs, one after another:
- bench_email.py (the run loop, per-recipient outcomes, the full card email) with the
  company pace off;
- bench_post_office.py with 2 processes;
- bench_celery.py with its worker set-ups (at 20 ms and more only the threaded and gevent
  pools: prefork -c 2 holds two connections and would take minutes);
then prints one table of emails/second, with the round-trip ceiling of the connections
this project holds (concurrency x BULKJOBS_EMAIL_CONNECTIONS, about two round trips per
email with pipelining) and each figure as a share of it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bizcards_bench .venv/bin/python bench/bench_compare.py
    .venv/bin/python bench/bench_compare.py --emails 2000 --latencies 0 20

DATABASE_URL (PostgreSQL) is used by bench_email and bench_post_office, whose databases
are flushed: never point it at real data. Figures on a machine doing other work are
not comparable with each other; run it on a quiet one.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Round trips per email over a pipelining connection: envelope and DATA together, then
#: the message and its final reply.
ROUND_TRIPS_PER_EMAIL = 2
#: This project's defaults: companies served at once x mail connections per batch.
CONNECTIONS_HELD = 8 * 2


def rates(command, env):
    """{label: emails/s} from one benchmark's output lines."""
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = {}
    for line in run.stdout.splitlines():
        if match := re.match(r"delivery: [\d.]+ s = (\d+) emails/s", line):
            found["this project (run loop)"] = int(match.group(1))
        elif match := re.match(r"post-office (\d+) process.*delivery (\d+)/s", line):
            found[f"post-office, {match.group(1)} processes"] = int(match.group(2))
        elif match := re.match(r"celery (\S+): (\d+) emails/s", line):
            found[f"celery {match.group(1)}"] = int(match.group(2))
    if not found:
        print(run.stdout[-2000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0, 20, 80])
    args = parser.parse_args()

    env = dict(os.environ, BULKJOBS_EMAIL_COMPANY_RATE="0")
    python = sys.executable
    table = []
    for latency in args.latencies:
        common = ["--emails", str(args.emails), "--latency-ms", f"{latency:g}"]
        pools = ["prefork:2", "prefork:4", "threads:16", "gevent:16"]
        if latency >= 20:
            pools = ["threads:16", "gevent:16"]
        results = {}
        results.update(rates([python, str(HERE / "bench_email.py"), *common], env))
        results.update(
            rates([python, str(HERE / "bench_post_office.py"), *common, "--processes", "2"], env)
        )
        results.update(
            rates([python, str(HERE / "bench_celery.py"), *common, "--pools", *pools], env)
        )
        ceiling = CONNECTIONS_HELD * 1000 / (ROUND_TRIPS_PER_EMAIL * latency) if latency else None
        table.append((latency, ceiling, results))

    print(
        f"{args.emails} emails; ceiling = {CONNECTIONS_HELD} connections / "
        f"({ROUND_TRIPS_PER_EMAIL} round trips x latency)"
    )
    for latency, ceiling, results in table:
        limit = f"ceiling {ceiling:.0f}/s" if ceiling else "no round-trip ceiling"
        print(f"\n{latency:g} ms per reply ({limit})")
        best_celery = max((v for k, v in results.items() if k.startswith("celery")), default=0)
        for label, rate in sorted(results.items(), key=lambda kv: -kv[1]):
            share = f", {100 * rate / ceiling:.0f}% of the ceiling" if ceiling else ""
            versus = f", {rate / best_celery:.2f}x the best Celery" if best_celery else ""
            print(f"  {label:<32} {rate:>5}/s{share}{versus}")


if __name__ == "__main__":
    main()
