"""Benchmark: the send page answering a 5 MB uploaded recipient list, good or bad.

Run: .venv/bin/python -m bench.bench_recipient_parsing [--size-mb 5] [--cases good,bad,...]

Each case builds a list of about --size-mb megabytes, uploads it as a CSV file to the
send page through the real view (a Django test client POST, the multipart body built
beforehand so that only the request is timed) and prints the seconds the request took,
the process's peak resident memory (resource.getrusage's maxrss, in a fresh process per
case, so the peak is this request's and Django's start-up) and its rise during the
request, the page's status and size in bytes. The cases:
- good: `E-Mail;Name` header and rows `kundeN@firmaM.de;Kunde N` (a German Excel export;
  answered with a redirect to the review, nothing queued);
- bad: lines with no address (`kunde N bei firma M, keine Adresse`), fewer than the line
  cap: every line read, the first 100 listed and the others counted;
- bad-short: `x` on each line (2.6 million lines): refused before reading by the line
  cap (twice BULKJOBS_EMAIL_MAX_RECIPIENTS);
- idn: distinct international domains (`kundeN@müller-N.de`), converted per label
  without the IDNA codec's nameprep (emails.recipients._ascii_label);
- idn-codec: distinct international domains that need nameprep (`kundeN@MÜLLER-N.de`,
  upper case is folded), the slow path through the codec, at most 63 characters a label.
The job's cap is set to --max-recipients (default 200,000, above the 100,000 default,
so that a 5 MB list of good lines is read to its end; with the default the request
stops at recipient 100,001 and says so). The first error of a refused page is printed.
Targets (issue #22): 5 MB of bad lines answered in under 5 s with a page under 200 KB
and under 200 MB of memory. Uses DATABASE_URL when set, else a throwaway SQLite file
under var/. Not a test: tests/emails/test_recipient_parsing.py checks the behaviour.
"""

import argparse
import gc
import html
import json
import os
import re
import resource
import subprocess
import sys
import time

CASES = ("good", "bad", "bad-short", "idn", "idn-codec")


def lines(case, size):
    """The upload's bytes: about `size` bytes of the case's lines."""
    rows, total, n = [], 0, 0
    if case == "good":
        rows.append("E-Mail;Name")
    while total < size:
        if case == "good":
            row = f"kunde{n}@firma{n % 500}.de;Kunde {n}"
        elif case == "bad":
            row = f"kunde {n} bei firma {n % 500}, keine Adresse"
        elif case == "bad-short":
            row = "x"
        elif case == "idn":
            row = f"kunde{n}@müller-{n}.de"
        else:
            row = f"kunde{n}@MÜLLER-{n}.de"
        rows.append(row)
        total += len(row) + 1
        n += 1
    return ("\n".join(rows) + "\n").encode("utf-8"), len(rows)


def first_error(response):
    found = re.search(
        r'id="error-summary".*?<li>(?:<a [^>]*>)?(.*?)</', response.content.decode(), re.S
    )
    return html.unescape(found.group(1))[:90] if found else ""


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(case, size):
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    from bench.bench_dashboard import setup_django

    setup_django("bench-recipient-parsing", reuse=False)
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
    from django.urls import reverse

    from cards.models import Company, Membership
    from emails.models import BulkEmailJob
    from tests.conftest import make_cards, make_user

    company = Company.objects.create(name="Bench", slug=f"bench-parsing-{os.getpid()}")
    user = make_user(f"bench-parsing-{os.getpid()}", company, Membership.Role.ADMIN)
    card = make_cards(company, 1, prefix="Bench")[0]
    client = Client()
    client.force_login(user)
    url = reverse("emails:send")
    client.get(url)
    data, line_count = lines(case, size)
    body = encode_multipart(
        BOUNDARY,
        {
            "card_mode": "selected",
            "cards": [card.pk],
            "recipient_mode": "list",
            "subject": "Unsere neuen Karten",
            "message": "",
            "action": "start",
            "recipients_file": SimpleUploadedFile("liste.csv", data, content_type="text/csv"),
        },
    )
    upload_bytes = len(data)
    del data
    gc.collect()
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    response = client.generic("POST", url, body, content_type=MULTIPART_CONTENT)
    seconds = time.perf_counter() - started
    rss_peak = peak_rss_mb()
    if BulkEmailJob.objects.filter(company=company).exists():
        raise SystemExit(f"{case}: a job was queued without review")
    print(
        json.dumps(
            {
                "lines": line_count,
                "upload_bytes": upload_bytes,
                "seconds": seconds,
                "status": response.status_code,
                "page_bytes": len(response.content),
                "rss_peak_mb": rss_peak,
                "rss_rise_mb": rss_peak - rss_before,
                "first_error": first_error(response),
            }
        )
    )


def run_child(case, size, max_recipients):
    args = [sys.executable, "-m", "bench.bench_recipient_parsing", "--child", case]
    args += ["--size-mb", str(size / 10**6)]
    env = dict(os.environ, BULKJOBS_EMAIL_MAX_RECIPIENTS=str(max_recipients))
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        sys.exit(f"{case}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--max-recipients", type=int, default=200_000)
    parser.add_argument("--child", choices=CASES)
    options = parser.parse_args()
    size = int(options.size_mb * 10**6)
    if options.child:
        child(options.child, size)
        return
    print(
        f"{'case':10} {'lines':>10} {'MB':>5} {'seconds':>8} {'status':>6} {'page KB':>8} "
        f"{'peak RSS MB':>11} {'RSS rise MB':>11}"
    )
    for case in options.cases.split(","):
        r = run_child(case, size, options.max_recipients)
        print(
            f"{case:10} {r['lines']:>10,} {r['upload_bytes'] / 10**6:>5.1f} {r['seconds']:>8.2f} "
            f"{r['status']:>6} {r['page_bytes'] / 1000:>8.1f} {r['rss_peak_mb']:>11.0f} "
            f"{r['rss_rise_mb']:>11.0f}  {r['first_error']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
