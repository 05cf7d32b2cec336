"""Take the screenshots of README.md and docs/features.md from the real app:
dashboard.png, job-detail.png, job-paused.png, activity.png, send-review.png (the
review before a big send), operator.png (the operators' view across companies; 1366 px
wide) and dashboard-phone.png (390 px) in docs/screenshots/.

Run: .venv/bin/python docs/screenshots/take.py

Builds a demo database under var/ (jobs in every state, made through the real
services where one exists), serves it with `manage.py runserver`, signs in with
Debian's chromium through Playwright and saves full-page PNGs beside this file.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DB = ROOT / "var" / "screenshots.sqlite3"
CHROMIUM = "/usr/bin/chromium"


def setup_django():
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB}{suffix}").unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # A throwaway key: production settings refuse to start without one, and nothing a
    # benchmark signs outlives it.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # runserver speaks plain HTTP on loopback: no redirect to HTTPS, cookies without Secure.
    for name in (
        "DJANGO_SECURE_SSL_REDIRECT",
        "DJANGO_SESSION_COOKIE_SECURE",
        "DJANGO_CSRF_COOKIE_SECURE",
    ):
        os.environ.setdefault(name, "false")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed():
    """A company with email jobs in every state and, if installed, some wallet jobs."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from bulkjobs.kinds import all_kinds
    from bulkjobs.models import ProcessorRun, Status
    from bulkjobs.ops.services import Actor, pause_job
    from cards.models import BusinessCard, Company, Membership
    from emails.models import BulkEmailJob, BulkEmailJobItem, EmailSuppression
    from emails.services import create_email_job

    now = timezone.now()
    company = Company.objects.create(name="Acme Corporation", slug="acme")
    users = {}
    for name, last_name in (("maria", "Weber"), ("tom", "Becker")):
        users[name] = get_user_model().objects.create_user(
            name,
            email=f"{name}@acme.example",
            password="demo-" + name,
            first_name=name.capitalize(),
            last_name=last_name,
        )
        Membership.objects.create(user=users[name], company=company, role=Membership.Role.ADMIN)
    cards = BusinessCard.objects.bulk_create(
        BusinessCard(
            company=company,
            full_name=f"{first} {last}",
            job_title=title,
            email=f"{first.lower()}.{last.lower()}@acme.example",
        )
        for first, last, title in [
            ("Ada", "Lovelace", "Head of Engineering"),
            ("Grace", "Hopper", "Rear Admiral"),
            ("Alan", "Turing", "Researcher"),
            ("Katherine", "Johnson", "Mathematician"),
            ("Linus", "Pauling", "Chemist"),
            ("Rosalind", "Franklin", "Crystallographer"),
        ]
    )
    contacts = "\n".join(f"Guest {n} <guest{n}@partner.example>" for n in range(1, 241))

    def email_job(subject, by, minutes_ago, recipients=None, **state):
        job = create_email_job(
            company=company,
            cards=[cards[0]] if recipients else cards,
            subject=subject,
            recipients_text=recipients,
            created_by=users[by],
        )
        state.setdefault("created_at", now - timedelta(minutes=minutes_ago))
        BulkEmailJob.objects.filter(pk=job.pk).update(**state)
        return job

    email_job(
        "Welcome to the new cards",
        "maria",
        300,
        status=Status.COMPLETED,
        succeeded_items=6,
        started_at=now - timedelta(minutes=299),
        finished_at=now - timedelta(minutes=298),
        last_processed_at=now - timedelta(minutes=298),
        reason="All 6 item(s) succeeded.",
    )
    BulkEmailJobItem.objects.filter(job__subject="Welcome to the new cards").update(
        status=Status.COMPLETED, attempts=1, processed_at=now - timedelta(minutes=298)
    )
    failed = email_job(
        "Trade fair follow-up",
        "tom",
        120,
        contacts,
        status=Status.COMPLETED,
        started_at=now - timedelta(minutes=119),
        finished_at=now - timedelta(minutes=110),
        last_processed_at=now - timedelta(minutes=110),
    )
    items = list(BulkEmailJobItem.objects.filter(job=failed).order_by("id"))
    reasons = [
        "Rejected at RCPT: 550 5.1.1 No such user",
        "Not sent: the address unsubscribed or bounced before (suppression list).",
        "Rejected at DATA: 554 5.6.0 Message content rejected",
    ]
    for n, item in enumerate(items):
        bad = n % 37 == 5
        BulkEmailJobItem.objects.filter(pk=item.pk).update(
            status=Status.FAILED if bad else Status.COMPLETED,
            reason=reasons[n % 3] if bad else "",
            attempts=3 if bad and n % 3 == 0 else 1,
            processed_at=now - timedelta(minutes=115),
        )
    # As a real run leaves them: the address that does not exist is suppressed as a hard
    # bounce, and the one not sent was on the list already; Retry leaves both alone.
    EmailSuppression.objects.bulk_create(
        EmailSuppression(company=company, email=item.recipient_email, reason="bounced")
        for n, item in enumerate(items)
        if n % 37 == 5 and n % 3 in (0, 1)
    )
    bad_count = sum(1 for n in range(len(items)) if n % 37 == 5)
    BulkEmailJob.objects.filter(pk=failed.pk).update(
        succeeded_items=len(items) - bad_count,
        failed_items=bad_count,
        reason=f"{bad_count} of {len(items)} item(s) failed; see the job's items for reasons.",
    )
    email_job(
        "Autumn newsletter card",
        "maria",
        45,
        contacts,
        status=Status.CANCELLED,
        cancelled_items=170,
        succeeded_items=70,
        started_at=now - timedelta(minutes=44),
        finished_at=now - timedelta(minutes=40),
        last_processed_at=now - timedelta(minutes=41),
        reason="Cancelled by user",
    )
    email_job(
        "Conference contacts",
        "tom",
        12,
        contacts,
        status=Status.PROCESSING,
        succeeded_items=96,
        failed_items=2,
        started_at=now - timedelta(minutes=6),
        last_processed_at=now - timedelta(seconds=20),
    )
    # Paused by a person through the real service: "Paused by Maria Weber at …".
    paused = email_job(
        "Product launch invitation",
        "tom",
        30,
        contacts,
        status=Status.PROCESSING,
        succeeded_items=50,
        started_at=now - timedelta(minutes=29),
        last_processed_at=now - timedelta(minutes=28),
    )
    BulkEmailJobItem.objects.filter(
        pk__in=list(
            BulkEmailJobItem.objects.filter(job=paused)
            .order_by("id")
            .values_list("pk", flat=True)[:50]
        )
    ).update(status=Status.COMPLETED, attempts=1, processed_at=now - timedelta(minutes=28))
    pause_job(paused, by=Actor.person(users["maria"]))
    email_job("Cards for the new team", "maria", 1)
    ProcessorRun.objects.create(kind="email", last_started_at=now - timedelta(seconds=40))

    if any(kind.name == "wallet" for kind in all_kinds()):
        from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem

        def wallet_job(by, job_cards, **state):
            # Made directly: the real service refuses to start while no wallet platform
            # is configured, and the screenshots need no certificates.
            job = BulkWalletApiJob.objects.create(
                company=company, created_by=users[by], total_items=len(job_cards), **state
            )
            BulkWalletApiJobItem.objects.bulk_create(
                BulkWalletApiJobItem(job=job, card=card, status=state["status"])
                for card in job_cards
            )

        wallet_job(
            "maria",
            cards,
            status=Status.COMPLETED,
            succeeded_items=6,
            created_at=now - timedelta(days=1),
            started_at=now - timedelta(days=1),
            finished_at=now - timedelta(days=1),
            last_processed_at=now - timedelta(days=1),
            reason="All 6 item(s) succeeded.",
        )
        wallet_job(
            "tom",
            cards[1:3],
            status=Status.FAILED,
            succeeded_items=1,
            failed_items=1,
            created_at=now - timedelta(hours=3),
            started_at=now - timedelta(hours=3),
            finished_at=now - timedelta(hours=3),
            last_processed_at=now - timedelta(hours=3),
            reason="1 of 2 item(s) failed; see the job's items for reasons.",
        )
    seed_other_company(now)
    record_activity()
    return failed, paused


def seed_other_company(now):
    """A second company, in Berlin, with a job waiting behind a paused one, and the
    platform operator (staff, in no company) who sees both companies' jobs."""
    from django.contrib.auth import get_user_model

    from bulkjobs.models import Status
    from cards.models import BusinessCard, Company, Membership
    from emails.models import BulkEmailJob
    from emails.services import create_email_job

    get_user_model().objects.create_user("operator", password="demo-operator", is_staff=True)
    globex = Company.objects.create(
        name="Globex GmbH", slug="globex", language="de", time_zone="Europe/Berlin"
    )
    anna = get_user_model().objects.create_user(
        "anna", password="demo-anna", first_name="Anna", last_name="Schmidt"
    )
    Membership.objects.create(user=anna, company=globex, role=Membership.Role.ADMIN)
    card = BusinessCard.objects.create(
        company=globex, full_name="Jonas Weber", job_title="Vertrieb", email="jonas@globex.example"
    )
    contacts = "\n".join(f"Kontakt {n} <kontakt{n}@kunde.example>" for n in range(1, 121))
    for subject, minutes_ago, state in [
        (
            "Newsletter Dezember",
            50,
            dict(
                status=Status.PROCESSING,
                succeeded_items=40,
                started_at=now - timedelta(minutes=48),
                last_processed_at=now - timedelta(minutes=9),
                paused_at=now - timedelta(minutes=8),
                reason="Paused, will retry next run: SMTP login refused (535 5.7.8)",
            ),
        ),
        ("Dringend: Ihr Termin morgen", 25, {}),
    ]:
        job = create_email_job(
            company=globex,
            cards=[card],
            subject=subject,
            recipients_text=contacts,
            created_by=anna,
        )
        BulkEmailJob.objects.filter(pk=job.pk).update(
            created_at=now - timedelta(minutes=minutes_ago), **state
        )


def record_activity():
    """The activity charts' hourly rows for the items seeded above, as the engine's
    batches would have written them (bulkjobs.engine.activity.record_batch_activity)."""
    from collections import Counter

    from bulkjobs.engine.activity import record_batch_activity
    from bulkjobs.models import Status
    from emails.models import BulkEmailJobItem
    from wallet.models import BulkWalletApiJobItem

    for kind, model in (("email", BulkEmailJobItem), ("wallet", BulkWalletApiJobItem)):
        done = model.objects.filter(
            processed_at__isnull=False, status__in=[Status.COMPLETED, Status.FAILED]
        ).values_list("job__company_id", "processed_at", "status")
        counts = Counter()
        for company_id, processed_at, status in done:
            hour = processed_at.replace(minute=0, second=0, microsecond=0)
            counts[(company_id, hour, status == Status.FAILED)] += 1
        for (company_id, hour, failed), n in counts.items():
            record_batch_activity(
                company_id,
                kind,
                hour,
                processed=n,
                failed=n if failed else 0,
                attempts=n,
                busy_seconds=0.2 * n,
            )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port):
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Generous: on a busy machine Django's start-up alone can take several seconds.
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=1)  # noqa: S310
            return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("runserver did not start")


def shoot(base, job, paused):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.goto(base + "/accounts/login/")
        page.get_by_label("Username").fill("maria")
        page.get_by_label("Password").fill("demo-maria")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/background-jobs/")
        page.screenshot(path=HERE / "dashboard.png", full_page=True)
        page.goto(f"{base}/background-jobs/email/{job.pk}/?status=failed")
        page.screenshot(path=HERE / "job-detail.png", full_page=True)
        page.goto(f"{base}/background-jobs/email/{paused.pk}/")
        page.screenshot(path=HERE / "job-paused.png", full_page=True)
        page.goto(base + "/background-jobs/activity/")
        page.screenshot(path=HERE / "activity.png", full_page=True)
        review(page, base)
        # A phone: the same session in a 390 px viewport, one card per job.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(base + "/background-jobs/")
        page.screenshot(path=HERE / "dashboard-phone.png", full_page=True)
        # The platform operator: every company's jobs and queues.
        operator = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        operator.goto(base + "/accounts/login/")
        operator.get_by_label("Username").fill("operator")
        operator.get_by_label("Password").fill("demo-operator")
        operator.get_by_role("button", name="Sign in").click()
        operator.wait_for_url(base + "/background-jobs/")
        operator.screenshot(path=HERE / "operator.png", full_page=True)
        browser.close()


def review(page, base):
    """The review before a big send: 150 pasted addresses (one twice), the summary beside
    the email as it will be sent."""
    page.goto(base + "/emails/send/")
    page.get_by_label("Only the cards I select").check()
    page.locator('input[name="cards"]').first.check()
    page.get_by_label("One card to a list of addresses (paste or upload)").check()
    addresses = [f"Kunde {n} <kunde{n}@firma.example>" for n in range(150)]
    page.locator("#id_recipients_text").fill("\n".join([*addresses, addresses[7]]))
    page.get_by_label("The recipients on this list agreed to receive my card by email.").check()
    page.get_by_label("Subject").fill("Our new business cards")
    page.get_by_role("button", name="Start sending").click()
    page.wait_for_url("**/emails/send/review/*/")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=HERE / "send-review.png", full_page=True)


def main():
    setup_django()
    job, paused = seed()
    port = free_port()
    server = serve(port)
    try:
        shoot(f"http://127.0.0.1:{port}", job, paused)
    finally:
        server.terminate()
        server.wait()
    print(
        "Saved dashboard.png, job-detail.png, job-paused.png, activity.png, send-review.png, "
        f"operator.png and dashboard-phone.png in {HERE}"
    )


if __name__ == "__main__":
    main()
