"""A German company reads every reason in German: jobs that completed, failed in part,
were cancelled, waited for the company's pace, waited for their provider and were
retried, run by the real engine against the real SMTP sink; then the dashboard, the job
pages, the activity page, the CSV export and the alert emails are read with the eyes of
a German user: none of the project's English words (names and the providers' verbatim
replies, shown in „…“, aside), and every time shown names its zone.
"""

import csv
import html
import io
import re

import pytest
from django.urls import reverse
from django.utils import translation

from bulkjobs import reasons
from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from cards.models import Company, Membership
from tests.conftest import make_cards, make_email_job, make_user
from tests.smtp_sink import free_port

# Apple Wallet configured with the wallet tests' certificate chain; Google Wallet off.
from tests.wallet.conftest import apple, chain, chain_files, google_off  # noqa: F401
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem

from .conftest import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("apple")]

# Words of the project's that a German page must not show: column headers, wallet
# results, and the English the engine wrote before reasons became codes.
ENGLISH_WORDS = [
    "Card",
    "Recipient email",
    "Recipient name",
    "Voided state",
    "Apple result",
    "Google result",
    "unchanged",
    "skipped",
    "item(s)",
    "succeeded",
    "Cancelled by",
    "Retrying failed items",
    "Automatic update",
    "Waiting for",
    "next slot at",
    "Paused, will retry",
    "Rejected at",
    "Temporary failure",
    "Gave up after",
    "not configured",
    "GOOGLE_WALLET_ISSUER_ID",
    "EMAIL_HOST",
    "cannot connect",
    "the mail server",
]


def english_templates():
    """The fixed parts of every reason's English words (bulkjobs.reasons), three words
    or longer: what a reason rendered in English would show."""
    fragments = set()
    with translation.override("en"):
        for spec in reasons._SPECS:
            for message in (spec.message, spec.staff, spec.notice, spec.speaker):
                if message is None:
                    continue
                if hasattr(message, "_proxy____args"):  # ngettext_lazy: both forms
                    texts = [str(arg) for arg in message._proxy____args[:2]]
                else:
                    texts = [str(message)]
                for text in texts:
                    for part in re.split(r"%\(\w+\)s", text):
                        part = part.strip(" .;:()")
                        if len(part.split()) >= 3:
                            fragments.add(part)
    return sorted(fragments)


def visible_text(page):
    """What a reader sees: no tags, scripts or attributes; the providers' own words
    (quoted „…“) left out, as they stay verbatim in their language."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"<[^>]+>", " ", page)
    text = html.unescape(page)
    return re.sub(r"„[^“]*“", "„…“", text)


def assert_german(text, where, zone_named_once=False):
    found = [word for word in ENGLISH_WORDS if re.search(rf"\b{re.escape(word)}", text)]
    found += [fragment for fragment in english_templates() if fragment in text]
    assert not found, f"English in {where}: {found}"
    if zone_named_once:
        # A chart's table of hours says its zone once, above it.
        assert "Zeiten in Europe/Berlin" in text, where
        return
    # Every time of day shown names its zone (Berlin: CET in winter, CEST in summer).
    unzoned = [
        text[max(0, match.start() - 40) : match.end() + 5]
        for match in re.finditer(r"\b\d\d:\d\d(?::\d\d)?(?![:\d])(?! (?:CET|CEST)\b)", text)
    ]
    assert not unzoned, f"times without their zone in {where}: {unzoned}"


@pytest.fixture
def german(db, settings, smtp_sink):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.BULKJOBS_ALERTS = True
    settings.BULKJOBS_ALERT_DIGEST = False
    settings.BULKJOBS_ALERT_WEBHOOK_URL = ""
    settings.SITE_URL = "https://cards.example.com"
    settings.BULKJOBS = {**settings.BULKJOBS, "MAX_ATTEMPTS": "1", "EMAIL_COMPANY_RATE": "0"}
    company = Company.objects.create(
        name="Beispiel GmbH", slug="beispiel", language="de", time_zone="Europe/Berlin"
    )
    admin = make_user("chefin", company, Membership.Role.ADMIN, email="chefin@beispiel.test")
    return company, admin, client_for(admin)


def page_of(client, name, *args, **query):
    response = client.get(reverse(f"bulkjobs:{name}", args=args), query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_a_german_company_reads_every_reason_in_german(german, settings, smtp_sink, email_kind):
    company, admin, client = german
    jobs = {}
    # Completed, and failed in part (a refusal, and a temporary one given up on).
    jobs["done"] = make_email_job(company, ["a@example.org", "b@example.org"], created_by=admin)
    run_once(email_kind)
    partly = ["ok@example.org", "reject@example.org", "tempfail@example.org"]
    jobs["partly"] = make_email_job(company, partly, created_by=admin)
    run_once(email_kind)
    jobs["partly"].refresh_from_db()
    assert (jobs["partly"].status, jobs["partly"].failed_items) == (Status.COMPLETED, 2)
    # Cancelled from the page.
    jobs["cancelled"] = make_email_job(company, ["c@example.org"], created_by=admin)
    client.post(reverse("bulkjobs:cancel", args=["email", jobs["cancelled"].pk]))
    # Waited for the company's pace: one email a minute, three to send.
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "1/min"}
    jobs["paced"] = make_email_job(company, 3, created_by=admin)
    run_once(email_kind)
    jobs["paced"].refresh_from_db()
    assert jobs["paced"].reason_code == "waiting"
    # What it waits for, and until when, in Berlin's time with the zone named.
    # (bulkjobs.web.queue: the engine's stored note gives way to the live wait.)
    waiting = r"Wartet auf das Tempo des Unternehmens \(1 pro Minute\): nächster Stapel in [^<]*\d\d:\d\d CET\)"
    for page in (
        page_of(client, "dashboard"),
        page_of(client, "job_detail", "email", jobs["paced"].pk),
    ):
        assert re.search(waiting, page)
        assert_german(visible_text(page), "a page with a job waiting for its pace")
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    # Retried: the failed items of the partial job queued again, and sent again.
    client.post(reverse("bulkjobs:retry", args=["email", jobs["partly"].pk]))
    jobs["partly"].refresh_from_db()
    assert jobs["partly"].reason_code == "retrying"
    retried_page = page_of(client, "job_detail", "email", jobs["partly"].pk)
    assert "Die fehlgeschlagenen Einträge werden wiederholt." in retried_page
    assert_german(visible_text(retried_page), "the retried job's page")
    # The paced job is done with; a job waiting for its provider (the mail server is
    # down) takes its place in the company's queue.
    client.post(reverse("bulkjobs:cancel", args=["email", jobs["paced"].pk]))
    run_once(email_kind)
    jobs["partly"].refresh_from_db()
    assert jobs["partly"].status == Status.COMPLETED
    settings.EMAIL_PORT = free_port()
    jobs["paused"] = make_email_job(company, ["d@example.org"], created_by=admin)
    run_once(email_kind)
    jobs["paused"].refresh_from_db()
    assert jobs["paused"].is_paused
    settings.EMAIL_PORT = smtp_sink.port
    # A wallet sync on a platform with Apple Wallet and without Google Wallet.
    wallet = get_kind("wallet")
    card = make_cards(company, 1)[0]
    jobs["wallet"] = BulkWalletApiJob.objects.create(
        company=company, total_items=1, created_by=admin
    )
    BulkWalletApiJobItem.objects.create(job=jobs["wallet"], card=card)
    run_once(wallet)
    jobs["wallet"].refresh_from_db()
    assert jobs["wallet"].status == Status.COMPLETED

    # The pages, as the German admin sees them.
    dashboard = page_of(client, "dashboard")
    assert "Alle 2 Einträge erfolgreich." in dashboard
    assert "Von einem Benutzer des Unternehmens abgebrochen" in dashboard
    assert "Der Mailserver ist nicht erreichbar" in dashboard
    assert_german(visible_text(dashboard), "the dashboard")
    for name, job in jobs.items():
        kind = "wallet" if name == "wallet" else "email"
        page = page_of(client, "job_detail", kind, job.pk)
        assert_german(visible_text(page), f"the {name} job's page")
    partly = page_of(client, "job_detail", "email", jobs["partly"].pk)
    assert "Vom Mailserver abgelehnt (bei RCPT); der Mailserver antwortete: „550" in partly
    assert "Nach 1 Versuchen aufgegeben" in partly
    wallet_page = page_of(client, "job_detail", "wallet", jobs["wallet"].pk)
    # The operator's setting names are not for the company; it reads one notice.
    assert "GOOGLE_WALLET" not in wallet_page
    assert wallet_page.count("Der Betreiber der Plattform muss sie einrichten") == 1
    activity = visible_text(page_of(client, "activity"))
    assert_german(activity, "the activity page", zone_named_once=True)

    # The CSV export.
    for name in ("partly", "wallet"):
        kind = "wallet" if name == "wallet" else "email"
        response = client.get(reverse("bulkjobs:job_items_csv", args=[kind, jobs[name].pk]))
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert rows[0][:3] == ["Eintrag", "Status", "Grund"]
        # ISO 8601 times carry their offset: the zone is named by it.
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d", "", str(rows))
        assert_german(visible_text(text), f"the {name} job's CSV")

    # The alert emails to the company (the partial failures).
    alerts = [m.message for m in smtp_sink.messages if b".vcf" not in m.data]
    assert alerts
    for message in alerts:
        assert_german(visible_text(message["Subject"] + message.get_content()), "an alert")


def test_an_operator_reads_the_setting_names(german):
    company, _admin, _client = german
    operator = make_user("ops", is_staff=True)
    Membership.objects.create(user=operator, company=company, role=Membership.Role.ADMIN)
    job = BulkWalletApiJob.objects.create(company=company, total_items=1)
    BulkWalletApiJobItem.objects.create(job=job, card=make_cards(company, 1)[0])
    run_once(get_kind("wallet"))
    page = page_of(client_for(operator), "job_detail", "wallet", job.pk)
    assert "GOOGLE_WALLET_ISSUER_ID" in page
    assert "Der Betreiber der Plattform muss sie einrichten" not in page
