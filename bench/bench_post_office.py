"""The same bulk email through django-post-office, for side-by-side figures.

Builds a separate virtualenv in var/bench/post-office-venv (Django at this project's pin
plus django-post-office from PyPI; nothing of it is imported by the project), queues N
card-sized emails (HTML + text + a .vcf attachment, ~4.4 KB) and times
`send_queued_mail --processes K` against the same sink as bench_email.py
(bench/latency_sink.py, optionally waiting before every reply).

    .venv/bin/python bench/bench_post_office.py [--emails 1000] [--processes 2] [--latency-ms 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bizcards_po .venv/bin/python bench/bench_post_office.py

Uses var/bench/post-office.sqlite3 unless DATABASE_URL (PostgreSQL only) is set; that
database is flushed.
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

from latency_sink import running_sink  # bench/ is this script's own folder

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "bench"
VENV = WORK / "post-office-venv"

SETTINGS = """
import os, urllib.parse
SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]
url = urllib.parse.urlsplit(os.environ["PO_DATABASE_URL"])
if url.scheme == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": url.path[1:],
                             "OPTIONS": {"timeout": 30}}}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": url.path[1:],
                             "USER": url.username, "HOST": url.hostname, "PORT": url.port}}
MEDIA_ROOT = os.environ["PO_MEDIA_ROOT"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST, EMAIL_PORT = "127.0.0.1", int(os.environ["PO_SMTP_PORT"])
POST_OFFICE = {"BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
               "BATCH_SIZE": 100, "THREADS_PER_PROCESS": 5, "LOG_LEVEL": 0}
"""

RUN = """
import os, sys, time, django
django.setup()
from django.core.management import call_command
from post_office import mail
from django.core.files.base import ContentFile
from post_office.models import Email
n = int(sys.argv[1]); processes = int(sys.argv[2])
call_command("migrate", verbosity=0)
Email.objects.all().delete()
html = "<html><body>" + "<p>Ada Lovelace, Head of Engineering, Acme</p>" * 50 + "</body></html>"
text = "Ada Lovelace, Head of Engineering, Acme\\n" * 50
vcard = b"BEGIN:VCARD\\r\\nVERSION:4.0\\r\\nFN:Ada Lovelace\\r\\nTEL:+44 20 7946 0001\\r\\nEND:VCARD\\r\\n" * 4
started = time.perf_counter()
# send_many() takes no attachments: one send() per email, as an app would queue them.
for i in range(n):
    mail.send([f"r{i}@example.net"], "cards@example.com", subject="Bench", message=text,
              html_message=html, priority="low", attachments={"card.vcf": ContentFile(vcard)})
queued = time.perf_counter()
call_command("send_queued_mail", processes=processes, lockfile=os.environ["PO_LOCKFILE"], log_level=0)
done = time.perf_counter()
sent = Email.objects.filter(status=0).count()
print(f"post-office {processes} process(es): {sent}/{n} sent; delivery {sent / (done - queued):.0f}/s;"
      f" end to end {sent / (done - started):.0f}/s")
"""


def ensure_venv():
    if (VENV / ".ready").exists():
        return
    django_pin = re.search(r"^Django==\S+", (ROOT / "requirements.txt").read_text(), re.M)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "pip"), "install", "--quiet"]
    subprocess.run([*pip, django_pin.group(0), "django-post-office", "psycopg[binary]"], check=True)
    (VENV / ".ready").touch()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    ensure_venv()
    (WORK / "po_settings.py").write_text(textwrap.dedent(SETTINGS))
    (WORK / "po_run.py").write_text(textwrap.dedent(RUN))
    with running_sink(args.latency_ms) as port:
        env = dict(
            os.environ,
            PYTHONPATH=str(WORK),
            DJANGO_SETTINGS_MODULE="po_settings",
            PO_DATABASE_URL=os.environ.get(
                "DATABASE_URL", f"sqlite:///{WORK / 'post-office.sqlite3'}"
            ),
            PO_SMTP_PORT=str(port),
            PO_LOCKFILE=str(WORK / "post-office"),
            PO_MEDIA_ROOT=str(WORK / "post-office-media"),
        )
        print(f"sink latency: {args.latency_ms:g} ms per reply")
        run = [str(VENV / "bin" / "python"), str(WORK / "po_run.py"), str(args.emails)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*run, str(args.processes)], env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        # Its processes' whole lives: start-up and queueing the emails included.
        print(f"post-office CPU ms per email (queueing included): {1000 * cpu / args.emails:.2f}")


if __name__ == "__main__":
    main()
