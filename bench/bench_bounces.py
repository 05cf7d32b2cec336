"""Benchmark: what bounces read back cost: the VERP envelope sender made per email, and
one bounce report read and written (`process_bounces`' work per message).

Run: .venv/bin/python -m bench.bench_bounces [reports]

Builds a throwaway SQLite database under var/ (or uses DATABASE_URL if set, which must
point at a database that may be filled) with one email job of `reports` items (default
2,000), then prints: microseconds per envelope_sender() (HMAC-SHA256, done once per
email in the sending path), microseconds per read_report() of a Postfix-style RFC 3464
report (parsing only), and milliseconds per process_message() (parse, token check,
the item's compare-and-set and the suppression insert). Not a test.
"""

import statistics
import sys
import time

from bench.bench_dashboard import setup_django


def main(reports=2000):
    setup_django("bench-bounces", reuse=False)
    import email
    from email import policy

    from django.conf import settings

    from cards.models import Company
    from emails import verp
    from emails.bounces import process_message, read_report
    from tests.conftest import make_email_job
    from tests.emails.test_bounces import postfix_dsn

    settings.BOUNCE_ADDRESS = "bounces@bounce.example.com"
    company = Company.objects.create(name="Bench", slug="bench-bounces")
    job = make_email_job(company, reports)
    pks = list(job.items.values_list("pk", flat=True))

    started = time.perf_counter()
    senders = [verp.envelope_sender(pk) for pk in pks]
    sender_us = (time.perf_counter() - started) / len(pks) * 1e6

    raws = [postfix_dsn(s, f"r{n}@example.net") for n, s in enumerate(senders)]
    started = time.perf_counter()
    for raw in raws[:500]:
        read_report(email.message_from_bytes(raw, policy=policy.compat32))
    parse_us = (time.perf_counter() - started) / min(500, len(raws)) * 1e6

    timings = []
    for raw in raws:
        started = time.perf_counter()
        process_message(raw)
        timings.append(time.perf_counter() - started)
    print(f"envelope_sender: {sender_us:.1f} µs per email")
    print(f"read_report (RFC 3464, parse only): {parse_us:.0f} µs per report")
    print(
        f"process_message ({len(raws)} hard bounces, {settings.DATABASES['default']['ENGINE']}): "
        f"median {statistics.median(timings) * 1000:.2f} ms, "
        f"p95 {sorted(timings)[int(len(timings) * 0.95)] * 1000:.2f} ms per report"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
