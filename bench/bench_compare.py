"""This project beside django-post-office and Celery, on one sink, at several latencies.

For each reply latency (default 0, 20 and 80 ms) runs, one after another:
- bench_email.py (the run loop, per-recipient outcomes, the full card email) with the
  company pace off, as configured (each item marked just before it is sent, by default)
  and again with BULKJOBS_MARK_AHEAD=10 (--mark-ahead: items marked ten at a time);
- bench_post_office.py with 2 processes;
- bench_celery.py with its worker set-ups (at 20 ms and more only the threaded and gevent
  pools: prefork -c 2 holds two connections and would take minutes);
then prints, per latency, each set-up's emails/second with its CPU milliseconds per email
(per process: this project's run loop, the database server and the sink; Celery's worker
and Redis; post-office's processes, queueing included), and the round-trip ceiling of
the connections this project holds (concurrency x BULKJOBS_EMAIL_CONNECTIONS): at one
round trip per email (the next envelope rides behind each message's final ".", as this
project sends) and at two (envelope, then message: pipelining without that).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bizcards_bench .venv/bin/python bench/bench_compare.py
    .venv/bin/python bench/bench_compare.py --emails 2000 --latencies 0 20

With --rounds N every set-up runs N times, in turn, and the median (the lower middle one
for an even N) is printed with each round's figure.

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


def connections_held():
    """The mail connections this project's run holds: companies at once x connections
    per batch (BULKJOBS_EMAIL_CONCURRENCY, BULKJOBS_EMAIL_CONNECTIONS, their defaults in
    bulkjobs/conf.py), within BULKJOBS_EMAIL_MAX_CONNECTIONS, as bulkjobs/engine/run.py
    counts them."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-compare-reads-settings-only")
    sys.path.insert(0, str(HERE.parent))
    django.setup()
    from bulkjobs import conf

    held = conf.get("EMAIL_CONCURRENCY") * conf.get("EMAIL_CONNECTIONS")
    return min(held, conf.get("EMAIL_MAX_CONNECTIONS"))


def rates(command, env, ours_label="this project (run loop)"):
    """{label: (emails/s, CPU note)} from one benchmark's output lines; bench_email's
    figures under `ours_label`."""
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found, ours, ours_cpu, sink_cpu, label = {}, None, "", "", None
    for line in run.stdout.splitlines():
        if match := re.match(r"delivery: [\d.]+ s = (\d+) emails/s", line):
            ours = int(match.group(1))
        elif match := re.match(
            r"CPU ms per email: this process ([\d.]+), database server ([\d.]+)", line
        ):
            ours_cpu = f"process {match.group(1)}, database {match.group(2)}"
        elif match := re.match(r"sink: received (\d+) messages.*, ([\d.]+) s CPU", line):
            sink_cpu = f"sink {1000 * float(match.group(2)) / max(int(match.group(1)), 1):.2f}"
        elif match := re.match(r"post-office (\d+) process.*delivery (\d+)/s", line):
            label = f"post-office, {match.group(1)} processes"
            found[label] = (int(match.group(2)), "")
        elif match := re.match(
            r"post-office CPU ms per email \(queueing included\): ([\d.]+)", line
        ):
            if label in found:
                found[label] = (found[label][0], f"processes {match.group(1)} (queueing included)")
        elif match := re.match(r"celery (\S+): (\d+) emails/s; CPU ms per email: (.*)", line):
            found[f"celery {match.group(1)}"] = (int(match.group(2)), match.group(3))
    if ours is not None:
        found[ours_label] = (ours, f"{ours_cpu}, {sink_cpu}")
    if not found:
        print(run.stdout[-2000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
    return found


def median_of(rounds):
    """{label: (median emails/s, CPU note of that round, every round's figure)}."""
    merged = {}
    for label in {label for results in rounds for label in results}:
        figures = sorted((r[label] for r in rounds if label in r), key=lambda figure: figure[0])
        rate, cpu = figures[(len(figures) - 1) // 2]
        merged[label] = (rate, cpu, [figure[0] for figure in figures])
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0, 20, 80])
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every set-up this many times, in turn, and print each one's median "
        "(this machine's speed drifts from minute to minute)",
    )
    parser.add_argument(
        "--mark-ahead",
        type=int,
        default=10,
        help="also run this project with BULKJOBS_MARK_AHEAD set to this (0: not)",
    )
    args = parser.parse_args()

    env = dict(os.environ, BULKJOBS_EMAIL_COMPANY_RATE="0")
    python = sys.executable
    table = []
    for latency in args.latencies:
        common = ["--emails", str(args.emails), "--latency-ms", f"{latency:g}"]
        pools = ["prefork:2", "prefork:4", "threads:16", "gevent:16"]
        if latency >= 20:
            pools = ["threads:16", "gevent:16"]
        rounds = []
        for _ in range(args.rounds):
            results = {}
            results.update(rates([python, str(HERE / "bench_email.py"), *common], env))
            if args.mark_ahead > 1:
                ahead = dict(env, BULKJOBS_MARK_AHEAD=str(args.mark_ahead))
                label = f"this project, MARK_AHEAD={args.mark_ahead}"
                results.update(rates([python, str(HERE / "bench_email.py"), *common], ahead, label))
            post_office = [python, str(HERE / "bench_post_office.py"), *common]
            results.update(rates([*post_office, "--processes", "2"], env))
            celery = [python, str(HERE / "bench_celery.py"), *common, "--pools", *pools]
            results.update(rates(celery, env))
            rounds.append(results)
        table.append((latency, median_of(rounds)))

    held = connections_held()
    print(f"{args.emails} emails; this project holds {held} mail connections")
    for latency, results in table:
        if latency:
            one, two = (held * 1000 / (trips * latency) for trips in (1, 2))
            print(
                f"\n{latency:g} ms per reply: ceiling {one:.0f}/s at one round trip per "
                f"email, {two:.0f}/s at two"
            )
        else:
            print(f"\n{latency:g} ms per reply: no round-trip ceiling")
        best_celery = max((v[0] for k, v in results.items() if k.startswith("celery")), default=0)
        for label, (rate, cpu, every) in sorted(results.items(), key=lambda kv: -kv[1][0]):
            notes = [] if len(every) == 1 else [f"rounds {', '.join(map(str, every))}"]
            if latency:
                notes.append(f"{100 * rate / one:.0f}% / {100 * rate / two:.0f}% of the ceilings")
            if best_celery:
                notes.append(f"{rate / best_celery:.2f}x the best Celery")
            if cpu:
                notes.append(f"CPU ms per email: {cpu}")
            print(f"  {label:<32} {rate:>5}/s  " + "; ".join(notes))


if __name__ == "__main__":
    main()
