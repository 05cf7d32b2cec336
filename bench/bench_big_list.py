"""Benchmark: creating an email job for a big recipient list, through the service and the page.

Run: .venv/bin/python -m bench.bench_big_list [counts ...] [--via service,upload,paste]

For each count (default 100,000 and 200,000) and each way in (default all three):
- service: emails.services.create_email_job() given the list's text, as the
  create_email_job command and the page call it;
- upload: the send page, a Django test client POST of the list as an uploaded CSV file
  (the multipart body is built beforehand, so only the request is timed), and the
  Confirm of its review;
- paste: the same with the list pasted into the text area.
The list holds CSV rows `recipientN@example.com,Recipient N` (about 40 bytes a line).

Each case runs in a fresh process twice: once timed (seconds, and how far the process's
peak resident memory rose during the call, from resource.getrusage), once under
tracemalloc (the peak of Python's own allocations during the call; tracemalloc slows
the call down, so it is not timed). Prints one row per case. Uses DATABASE_URL when set
(a database it may fill; each case deletes its job again), else a throwaway SQLite file
under var/. Not a test: tests/emails/test_big_lists.py checks the behaviour.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

DEFAULT_COUNTS = (100_000, 200_000)
WAYS = ("service", "upload", "paste")


def recipient_list(count):
    return "".join(f"recipient{n}@example.com,Recipient {n}\n" for n in range(count))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(way, count, trace):
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    from bench.bench_dashboard import setup_django

    setup_django("bench-big-list", reuse=False)
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection
    from django.test import Client
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
    from django.urls import reverse

    from cards.models import Company, Membership
    from emails.models import BulkEmailJob
    from emails.services import create_email_job
    from tests.conftest import make_cards, make_user

    Company.objects.filter(slug="bench-big-list").delete()
    company = Company.objects.create(name="Bench", slug="bench-big-list")
    user = make_user(f"bench-big-list-{os.getpid()}", company, Membership.Role.ADMIN)
    card = make_cards(company, 1, prefix="Bench")[0]
    text = recipient_list(count)

    if way == "service":

        def call():
            return create_email_job(
                company=company,
                cards=[card],
                subject="Our new cards",
                recipients_text=text,
                created_by=user,
            )

    else:
        client = Client()
        client.force_login(user)
        client.get(reverse("emails:send"))  # the session and the CSRF-free test client warm up
        data = {
            "card_mode": "selected",
            "cards": [card.pk],
            "recipient_mode": "list",
            "subject": "Our new cards",
            "message": "",
            "action": "start",
        }
        if way == "upload":
            data["recipients_file"] = SimpleUploadedFile(
                "list.csv", text.encode(), content_type="text/csv"
            )
        else:
            data["recipients_text"] = text
        body = encode_multipart(BOUNDARY, data)
        del data, text
        url = reverse("emails:send")

        def call():
            response = client.generic("POST", url, body, content_type=MULTIPART_CONTENT)
            if response.status_code != 302:
                raise SystemExit(f"{way}: the page answered {response.status_code}")
            if "/review/" in response["Location"]:
                # A list above EMAIL_REVIEW_THRESHOLD is reviewed, then confirmed.
                response = client.post(response["Location"] + "confirm/")
            return BulkEmailJob.objects.filter(company=company).latest("pk")

    gc.collect()
    rss_before = peak_rss_mb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    job = call()
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    tracemalloc.stop()
    rss_rise = peak_rss_mb() - rss_before
    items = job.items.count()
    if items != count:
        raise SystemExit(f"{way}: {items} items for {count} recipients")
    job.delete()
    Company.objects.filter(pk=company.pk).delete()
    print(
        json.dumps(
            {
                "vendor": connection.vendor,
                "seconds": seconds,
                "rss_rise_mb": rss_rise,
                "traced_peak_mb": traced_peak,
            }
        )
    )


def run_child(way, count, trace):
    args = [sys.executable, "-m", "bench.bench_big_list", "--child", way, str(count)]
    if trace:
        args.append("--trace")
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{way} {count}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("counts", nargs="*", type=int, default=DEFAULT_COUNTS)
    parser.add_argument("--via", default=",".join(WAYS))
    parser.add_argument("--child", choices=WAYS)
    parser.add_argument("--trace", action="store_true")
    options = parser.parse_args()
    if options.child:
        child(options.child, options.counts[0], options.trace)
        return
    print(f"{'way':8} {'recipients':>10} {'seconds':>8} {'RSS rise MB':>12} {'traced peak MB':>15}")
    for count in options.counts:
        for way in options.via.split(","):
            timed = run_child(way, count, trace=False)
            traced = run_child(way, count, trace=True)
            print(
                f"{way:8} {count:>10,} {timed['seconds']:>8.2f} {timed['rss_rise_mb']:>12.0f} "
                f"{traced['traced_peak_mb']:>15.0f}  ({timed['vendor']})",
                flush=True,
            )


if __name__ == "__main__":
    main()
