"""Languages and time zones of the web app: a company's own, the browser's where no company applies.

A German company's users see German pages whatever their browser says, an English
company's stay English, and visitors outside a company (the sign-in page) get their
browser's language. Times on a company's pages are in its time zone.
"""

import datetime

import pytest
import time_machine
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone, translation

from bulkjobs.engine.activity import record_batch_activity
from bulkjobs.models import Status
from cards.locale import company_locale
from cards.models import BusinessCard, Company, Membership
from emails.models import BulkEmailJob
from emails.unsubscribe import make_token
from tests.conftest import make_cards, make_email_job, make_user
from tests.web.conftest import client_for, fail_items

SEND = reverse("emails:send")
UTC = datetime.UTC


@pytest.fixture(autouse=True)
def no_language_left_behind():
    """LocaleMiddleware activates the browser's language in this thread; later tests
    must start from the default again."""
    yield
    translation.deactivate()
    timezone.deactivate()


@pytest.fixture
def german_company(db):
    return Company.objects.create(
        name="Beispiel GmbH", slug="beispiel", language="de", time_zone="Europe/Berlin"
    )


@pytest.fixture
def german_admin(german_company):
    return make_user("chefin", german_company, Membership.Role.ADMIN)


@pytest.fixture
def german_client(german_admin, german_company):
    make_cards(german_company, 3)
    return client_for(german_admin)


def test_a_german_companys_card_list_is_german(german_client):
    response = german_client.get(reverse("cards:list"))
    page = response.content.decode()
    assert response["Content-Language"] == "de"
    assert '<html lang="de">' in page
    assert "<h1>Karten</h1>" in page
    assert "3 Karten von Beispiel GmbH" in page
    assert ">Position</th>" in page and ">Öffentliche Seite</th>" in page
    assert ">Per E-Mail senden</a>" in page and ">Abmelden" in page
    assert "Job title" not in page and "Sign out" not in page


def test_a_german_companys_send_page_and_its_errors_are_german(german_client):
    page = german_client.get(SEND).content.decode()
    assert "<h1>Karten per E-Mail senden</h1>" in page
    assert "3 Karten verfügbar." in page
    assert "Jede Karte an die E-Mail-Adresse ihres Inhabers" in page
    assert ">Senden starten</button>" in page

    response = german_client.post(
        SEND,
        {"card_mode": "selected", "recipient_mode": "holders", "subject": "", "action": "start"},
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "Wählen Sie mindestens eine Karte aus." in page
    # Django's own messages come from Django's German catalogue.
    assert "Dieses Feld ist zwingend erforderlich." in page


def test_a_german_companys_bad_recipient_lines_are_explained_in_german(german_client):
    response = german_client.post(
        SEND,
        {
            "card_mode": "selected",
            "cards": [BusinessCard.objects.first().pk],
            "recipient_mode": "list",
            "recipients_text": "ok@example.com\nnot-an-address@\n" + "x" * 1001,
            "consent": "on",
            "subject": "Hallo",
            "action": "start",
        },
    )
    page = response.content.decode()
    assert "2 Zeilen der Liste haben Fehler:" in page
    assert "Bitte beheben Sie diese Fehler:" in page
    assert "Zeile 2: keine Domain nach dem @" in page
    # Numbers are written the German way too.
    assert "Zeile 3: die Zeile ist länger als 1.000 Zeichen" in page
    assert not BulkEmailJob.objects.exists()


def test_starting_a_job_is_confirmed_in_german(german_client):
    response = german_client.post(
        SEND,
        {"card_mode": "all", "recipient_mode": "holders", "subject": "Hallo", "action": "start"},
        follow=True,
    )
    job = BulkEmailJob.objects.get()
    assert f"E-Mail-Auftrag #{job.pk} mit 3 Empfängern angelegt" in response.content.decode()


def test_a_german_companys_wallet_sync_page_is_german(german_client):
    response = german_client.get(reverse("wallet:sync"))
    page = response.content.decode()
    assert "<h1>Karten mit Wallets abgleichen</h1>" in page
    assert '<h2 id="platforms-heading">Plattformen</h2>' in page
    assert "Alle Karten des Unternehmens" in page and ">Abgleich starten</button>" in page


def test_a_german_company_is_told_in_german_that_no_wallet_is_set_up(german_client, settings):
    settings.APPLE_PASS_CERT = settings.APPLE_PASS_P12 = settings.APPLE_TEAM_ID = ""
    settings.GOOGLE_WALLET_ISSUER_ID = ""
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = ""
    response = german_client.post(reverse("wallet:sync"), {"card_mode": "all"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Der Abgleich mit den Wallets ist auf dieser Website noch nicht eingerichtet" in page
    assert "not set up" not in page


def test_an_automatic_job_is_named_in_german(german_client, german_company):
    from wallet.models import BulkWalletApiJob

    BulkWalletApiJob.objects.create(company=german_company, automatic=True)
    page = german_client.get(reverse("bulkjobs:dashboard")).content.decode()
    assert "Automatisch (Kartenänderungen)" in page
    assert "Automatic (card changes)" not in page


def test_the_company_language_wins_over_the_browsers(german_client, admin_client_):
    german = german_client.get(reverse("cards:list"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert "<h1>Karten</h1>" in german.content.decode()
    english = admin_client_.get(reverse("cards:list"), HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert english["Content-Language"] == "en"
    assert "<h1>Cards</h1>" in english.content.decode()
    assert "Karten" not in english.content.decode()


def test_an_english_companys_pages_stay_english(admin_client_, cards):
    for url, text in [
        (reverse("cards:list"), "<h1>Cards</h1>"),
        (SEND, "<h1>Send cards by email</h1>"),
        (reverse("wallet:sync"), "<h1>Sync cards to wallets</h1>"),
    ]:
        page = admin_client_.get(url, HTTP_ACCEPT_LANGUAGE="de").content.decode()
        assert text in page and '<html lang="en">' in page, url


@pytest.mark.parametrize(
    ("accept_language", "heading", "label"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", "<h1>Anmelden</h1>", ">Benutzername</label>"),
        ("en-GB,en;q=0.8", "<h1>Sign in</h1>", ">Username</label>"),
        # A language the site does not offer: the default, English.
        ("fr-FR", "<h1>Sign in</h1>", ">Username</label>"),
    ],
)
def test_the_sign_in_page_follows_the_browser(db, client, accept_language, heading, label):
    response = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE=accept_language)
    page = response.content.decode()
    assert heading in page and label in page
    assert "Accept-Language" in response["Vary"]


def test_a_failed_sign_in_is_explained_in_the_browsers_language(db, client):
    make_user("someone")
    response = client.post(
        reverse("login"),
        {"username": "someone", "password": "wrong"},
        HTTP_ACCEPT_LANGUAGE="de",
    )
    assert "Benutzername und Passwort stimmen nicht überein." in response.content.decode()


def test_a_public_card_page_is_in_its_companys_language(german_company, client):
    card = make_cards(german_company, 1)[0]
    response = client.get(card.get_absolute_url(), HTTP_ACCEPT_LANGUAGE="en")
    page = response.content.decode()
    assert response["Content-Language"] == "de"
    assert ">Kontakt speichern (.vcf)</a>" in page and "<dt>Telefon</dt>" in page


def test_the_unsubscribe_page_is_in_its_companys_language(german_company, client):
    path = reverse("emails:unsubscribe", args=[make_token(german_company.pk, "a@example.org")])
    page = client.get(path, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Keine Visitenkarten-E-Mails von Beispiel GmbH mehr an" in page
    assert ">Abbestellen</button>" in page
    done = client.post(path).content.decode()
    assert "Sie erhalten keine weiteren Visitenkarten-E-Mails von Beispiel GmbH." in done
    one_click = client.post(path, {"List-Unsubscribe": "One-Click"})
    assert one_click.content.decode() == "Abgemeldet."


def test_a_german_companys_times_are_in_its_zone_and_named(
    german_client, german_company, german_admin
):
    with time_machine.travel(datetime.datetime(2026, 1, 15, 13, 5, 9, tzinfo=UTC), tick=False):
        job = make_email_job(
            german_company, cards=list(german_company.cards.all()), created_by=german_admin
        )
    page = german_client.get(reverse("bulkjobs:job_detail", args=["email", job.pk]))
    # 13:05 UTC is 14:05 in Berlin in winter.
    assert "<dt>Erstellt</dt><dd>2026-01-15 14:05:09 CET</dd>" in page.content.decode()
    dashboard = german_client.get(reverse("bulkjobs:dashboard")).content.decode()
    assert ">2026-01-15 14:05 CET</time>" in dashboard


def test_summer_time_is_named_too(german_client, german_company, german_admin):
    with time_machine.travel(datetime.datetime(2026, 7, 15, 13, 5, 9, tzinfo=UTC), tick=False):
        job = make_email_job(
            german_company, cards=list(german_company.cards.all()), created_by=german_admin
        )
    page = german_client.get(reverse("bulkjobs:job_detail", args=["email", job.pk]))
    assert "2026-07-15 15:05:09 CEST" in page.content.decode()


def test_an_english_companys_times_stay_in_utc(admin_client_, company, cards, owner):
    with time_machine.travel(datetime.datetime(2026, 1, 15, 13, 5, 9, tzinfo=UTC), tick=False):
        job = make_email_job(company, cards=cards, created_by=owner, status=Status.PENDING)
    page = admin_client_.get(reverse("bulkjobs:job_detail", args=["email", job.pk]))
    assert "<dt>Created</dt><dd>2026-01-15 13:05:09 UTC</dd>" in page.content.decode()


def test_a_german_companys_dashboard_is_german(german_client, german_company, german_admin):
    cards = list(german_company.cards.all())
    finished = fail_items(
        make_email_job(german_company, cards=cards, created_by=german_admin, subject="Messe"), 1
    )
    running = make_email_job(
        german_company, cards=cards, created_by=german_admin, subject="Neujahr"
    )
    BulkEmailJob.objects.filter(pk=running.pk).update(status=Status.PROCESSING)
    page = german_client.get(reverse("bulkjobs:dashboard")).content.decode()
    assert "<h1>Hintergrundaufträge</h1>" in page
    assert ">E-Mail-Aufträge" in page and ">Wallet-Abgleiche" in page
    assert "Noch keine Wallet-Abgleiche." in page
    assert "wird alle 10 Sekunden aktualisiert" in page
    assert "Abgeschlossen, 1 fehlgeschlagen" in page
    assert (
        "2 gesendet, 1 fehlgeschlagen, 0 abgebrochen, 0 noch nicht gesendet (von 3 E-Mails)" in page
    )
    assert (
        f"E-Mail-Auftrag #{running.pk}, &#x27;Neujahr&#x27; abbrechen: 3 E-Mails noch nicht gesendet?"
        in page
    )
    assert ">Auftrag abbrechen</button>" in page
    # The words of static/js/jobs.js come with the page.
    assert 'data-notifications-on="Benachrichtigungen an"' in page
    for english in ("Background jobs", "Completed with", "Cancel job", "No wallet sync jobs"):
        assert english not in page

    detail = german_client.get(reverse("bulkjobs:job_detail", args=["email", finished.pk]))
    detail = detail.content.decode()
    assert "<dt>Art</dt><dd>E-Mail-Auftrag</dd>" in detail
    assert "1 fehlgeschlagenen Eintrag wiederholen" in detail
    assert ">CSV herunterladen</a>" in detail

    retried = german_client.post(
        reverse("bulkjobs:retry", args=["email", finished.pk]), follow=True
    ).content.decode()
    assert (
        f"E-Mail-Auftrag #{finished.pk}, &#x27;Messe&#x27;: 1 fehlgeschlagene Einträge" in retried
    )


def test_a_german_member_is_told_in_german_what_they_may_do(german_company, german_admin):
    member = make_user("mitarbeiter", german_company, Membership.Role.MEMBER)
    response = client_for(member).get(SEND)
    page = response.content.decode()
    assert response.status_code == 403
    assert "Das ist den Administratoren des Unternehmens vorbehalten" in page
    assert "Als Mitglied von Beispiel GmbH können Sie" in page
    assert "Nur Administratoren des Unternehmens können das tun." in page


@pytest.mark.parametrize(
    ("zone", "moment", "shown"),
    [
        (
            "Europe/Berlin",
            datetime.datetime(2026, 1, 15, 13, 5, tzinfo=UTC),
            "2026-01-15 14:05 CET",
        ),
        (
            "Europe/Berlin",
            datetime.datetime(2026, 7, 15, 13, 5, tzinfo=UTC),
            "2026-07-15 15:05 CEST",
        ),
        ("UTC", datetime.datetime(2026, 7, 15, 13, 5, tzinfo=UTC), "2026-07-15 13:05 UTC"),
        # A zone without letters of its own is named by its IANA name.
        (
            "Asia/Dubai",
            datetime.datetime(2026, 7, 15, 13, 5, tzinfo=UTC),
            "2026-07-15 17:05 Asia/Dubai",
        ),
    ],
)
def test_the_zoned_filter_names_the_zone(zone, moment, shown):
    company = Company(name="X", slug="x", language="en", time_zone=zone)
    template = Template("{% load zoned %}{{ moment|zoned }}|{{ missing|zoned|default:'—' }}")
    with company_locale(company):
        assert template.render(Context({"moment": moment})) == f"{shown}|—"


def test_an_unknown_zone_falls_back_to_the_servers(caplog):
    company = Company(pk=7, name="X", slug="x", time_zone="Mars/Olympus_Mons")
    template = Template("{% load zoned %}{{ moment|zoned:'H:i' }}")
    with company_locale(company):
        shown = template.render(Context({"moment": datetime.datetime(2026, 1, 1, 9, tzinfo=UTC)}))
    assert shown == "09:00 UTC"
    assert "Mars/Olympus_Mons" in caplog.text


ACTIVITY = reverse("bulkjobs:activity")
NOON = datetime.datetime(2026, 1, 15, 13, 30, tzinfo=UTC)


def job_with_attempts(company, cards, by):
    """A finished job whose failed item logged a retry and a final failure, one earlier
    attempt dropped from the bounded log."""
    with time_machine.travel(NOON, tick=False):
        job = fail_items(make_email_job(company, cards=cards, created_by=by), 1)
    item = job.items.get(status=Status.FAILED)
    item.attempt_log = [
        {"n": 1, "at": "2026-01-15T13:05:09+00:00", "status": "pending", "reason": "450 busy"},
        {"n": 3, "at": "2026-01-15T13:20:00+00:00", "status": "failed", "reason": "550 no"},
    ]
    item.save(update_fields=["attempt_log"])
    return job


def test_a_german_companys_activity_page_is_german(german_client, german_company):
    record_batch_activity(
        german_company.pk, "email", NOON, processed=11, failed=1, attempts=11, busy_seconds=1
    )
    with time_machine.travel(NOON, tick=False):
        page = german_client.get(ACTIVITY).content.decode()
        dashboard = german_client.get(reverse("bulkjobs:dashboard")).content.decode()
    assert "<h1>Aktivität</h1>" in page
    assert (
        "Verarbeitete und fehlgeschlagene Einträge im Zeitverlauf. Zeiten in Europe/Berlin." in page
    )
    assert ">E-Mail-Aufträge: Einträge pro Stunde, letzte 24 Stunden</title>" in page
    assert (
        "E-Mail-Aufträge: Einträge pro Tag, letzte 30 Tage: 11 verarbeitet, 1 fehlgeschlagen"
        in page
    )
    assert "11 Einträge verarbeitet, 1 fehlgeschlagen, über 24 Zeiträume" in page
    # 13:30 UTC falls in Berlin's 14:00 hour.
    assert "<title>2026-01-15 14:00: 10 erfolgreich, 1 fehlgeschlagen</title>" in page
    assert ">Heute gesendet</dt>" in page and ">Zeitraum</th>" in page
    assert "Wallet-Abgleiche: Einträge pro Tag, letzte 30 Tage als Tabelle" in page
    for english in ("items per hour", "succeeded", "as a table", "Sent today", "Period"):
        assert english not in page
    assert "Diagramme: Einträge pro Stunde und pro Tag" in dashboard


def test_a_german_companys_attempt_history_is_german(german_client, german_company, german_admin):
    job = job_with_attempts(german_company, list(german_company.cards.all()), german_admin)
    page = german_client.get(reverse("bulkjobs:job_detail", args=["email", job.pk]))
    page = page.content.decode()
    assert "2 Versuche protokolliert" in page
    assert "Versuch 1: wird wiederholt: 450 busy" in page
    assert 'aria-label="Frühere Versuche nicht aufbewahrt"' in page
    assert "Versuch 3: fehlgeschlagen: 550 no" in page
    assert ">um 2026-01-15 14:20:00 CET</time>" in page
    assert "attempts logged" not in page and "to retry" not in page


def test_an_english_companys_activity_and_attempts_stay_english(
    admin_client_, company, cards, owner
):
    record_batch_activity(
        company.pk, "email", NOON, processed=11, failed=1, attempts=11, busy_seconds=1
    )
    job = job_with_attempts(company, cards, owner)
    german_browser = {"HTTP_ACCEPT_LANGUAGE": "de"}
    with time_machine.travel(NOON, tick=False):
        page = admin_client_.get(ACTIVITY, **german_browser).content.decode()
    assert "<h1>Activity</h1>" in page and "Times are in UTC." in page
    assert "<title>2026-01-15 13:00: 10 succeeded, 1 failed</title>" in page
    assert "11 items processed, 1 failed, over 24 periods" in page
    detail = admin_client_.get(
        reverse("bulkjobs:job_detail", args=["email", job.pk]), **german_browser
    )
    detail = detail.content.decode()
    assert "2 attempts logged" in detail and "Attempt 1: to retry: 450 busy" in detail
    assert ">at 2026-01-15 13:20:00 UTC</time>" in detail
    assert "Versuch" not in detail and "Aktivität" not in page
