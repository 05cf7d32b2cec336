"""bulkjobs.reasons: the English the `reason` column keeps, the mapping of the English
written before codes back to codes, and the words each reader gets."""

import zoneinfo
from datetime import UTC, datetime

import pytest
import time_machine
from django.utils import translation

from bulkjobs import reasons
from bulkjobs.reasons import Reason, describe_text, parse_legacy, render

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")

# The English the engine wrote before codes existed, and the code each maps to.
LEGACY = [
    ("All 300 item(s) succeeded.", "all_succeeded", {"count": 300}, ""),
    (
        "2 of 9 item(s) failed; see the job's items for reasons. 3 cancelled.",
        "some_failed",
        {"failed": 2, "total": 9, "count": 9, "cancelled": 3},
        "",
    ),
    ("Cancelled by user", "cancelled", {"by": "user"}, ""),
    ("Cancelled by admin", "cancelled", {"by": "admin"}, ""),
    ("Retrying failed items.", "retrying", {}, ""),
    ("Automatic update: cards changed or deleted since the last run.", "automatic_update", {}, ""),
    ("Expired: no progress for 30 minutes.", "expired_inactive", {"minutes": 30}, ""),
    ("Job expired: no progress for 30 minutes.", "job_expired", {"minutes": 30}, ""),
    (
        "Rejected at RCPT: 550 5.1.1 no such user",
        "smtp_rejected",
        {"stage": "RCPT"},
        "550 5.1.1 no such user",
    ),
    ("Not sent: the card was deleted.", "card_deleted", {}, ""),
    (
        "Google Wallet is not configured: set GOOGLE_WALLET_ISSUER_ID.",
        "wallet_not_configured",
        {"platform": "Google Wallet", "settings": "GOOGLE_WALLET_ISSUER_ID"},
        "",
    ),
    (
        "Apple Wallet synced; Google Wallet skipped (not configured).",
        "wallet_synced",
        {"apple": "synced", "google": "skipped (not configured)"},
        "",
    ),
    (
        "Postmark refused the API key (401 bad token); check the ANYMAIL_… settings of "
        "Postmark (its API key or server token)",
        "esp_key_refused",
        {"esp": "Postmark"},
        "401 bad token",
    ),
    ("Refused by Postmark: 422 invalid", "esp_refused", {"esp": "Postmark"}, "422 invalid"),
    (
        "Google Wallet: Temporary failure: Cannot reach Google Wallet (PATCH /x).",
        "wallet_platform",
        {
            "platform": "Google Wallet",
            "cause": {
                "code": "detail_temporary",
                "params": {
                    "cause": {"code": "google_unreachable", "params": {"request": "PATCH /x"}}
                },
            },
        },
        "",
    ),
]


@pytest.mark.parametrize(
    ("text", "code", "params", "reply"), LEGACY, ids=[row[1] for row in LEGACY]
)
def test_the_english_written_before_codes_maps_to_its_code_and_back(text, code, params, reply):
    reason = parse_legacy(text)
    assert (reason.code, reason.params, reason.reply) == (code, params, reply)
    # The English the engine keeps writing is the same words, so older releases and the
    # original's SQL read what they always read.
    assert reason.english() == text


def test_prefixed_forms_carry_their_cause_and_the_provider_words():
    text = (
        "Paused, will retry next run: SMTP login refused (535 5.7.8 bad credentials); "
        "check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD"
    )
    reason = parse_legacy(text)
    assert reason.code == "paused"
    assert reason.params == {"cause": {"code": "smtp_login_refused", "params": {}}}
    assert reason.reply == "535 5.7.8 bad credentials"
    assert reason.english() == text
    gave_up = parse_legacy("Gave up after 5 attempts: Temporary failure at RCPT: 450 busy")
    assert (gave_up.code, gave_up.params["attempts"], gave_up.reply) == ("gave_up", 5, "450 busy")
    assert gave_up.params["cause"] == {"code": "smtp_temporary", "params": {"stage": "RCPT"}}
    waiting = parse_legacy("Waiting for the company's pace (50/min); next slot at 03:02:30")
    assert waiting.code == "waiting"
    assert waiting.params["limit"] == {"code": "company_pace", "params": {"rate": "50/min"}}
    assert waiting.params["slot"] == "03:02:30"


def test_any_other_text_is_shown_as_it_was():
    assert parse_legacy("Stopped by the night shift") is None
    assert parse_legacy("") is None
    assert describe_text("Stopped by the night shift") == "Stopped by the night shift"
    reason = reasons.as_reason("Stopped by the night shift")
    assert reason.columns() == {
        "reason": "Stopped by the night shift",
        "reason_code": "",
        "reason_params": {},
        "provider_reply": "",
    }


def test_german_words_group_numbers_quote_the_provider_and_name_the_zone():
    with translation.override("de"):
        assert render("all_succeeded", {"count": 5000}) == "Alle 5.000 Einträge erfolgreich."
        assert render("smtp_rejected", {"stage": "RCPT"}, reply="550 no such user") == (
            "Vom Mailserver abgelehnt (bei RCPT); der Mailserver antwortete: „550 no such user“"
        )
        slot = datetime(2026, 1, 15, 13, 2, 30, tzinfo=UTC)
        waiting = reasons.waiting("the company's pace (50/min)", slot.timestamp())
        with time_machine.travel(datetime(2026, 1, 15, 13, 0, tzinfo=UTC), tick=False):
            assert render(waiting.code, waiting.params, tz=BERLIN) == (
                "Wartet auf das Tempo des Unternehmens (50 pro Minute); "
                "nächster freier Platz um 14:02:30 CET"
            )
        # A slot on another day there (a daily limit) has its date.
        with time_machine.travel(datetime(2026, 1, 14, 13, 0, tzinfo=UTC), tick=False):
            assert render(waiting.code, waiting.params, tz=BERLIN).endswith(
                "um 2026-01-15 14:02:30 CET"
            )
    with translation.override("en"):
        assert render("all_succeeded", {"count": 5000}) == "All 5,000 items succeeded."
        assert render("sender_refused", {"sender": "a@b.example"}, reply="550 no").startswith(
            "The mail server refused the sender address “a@b.example”"
        )


def test_operator_words_are_for_operators_and_company_users_get_one_notice():
    not_configured = parse_legacy("Google Wallet is not configured: set GOOGLE_WALLET_ISSUER_ID.")
    with translation.override("de"):
        staff = render(not_configured.code, not_configured.params, for_staff=True)
        user = render(not_configured.code, not_configured.params)
    assert "GOOGLE_WALLET_ISSUER_ID" in staff and staff.notice == ""
    assert user == "Google Wallet ist auf dieser Plattform nicht eingerichtet"
    assert "Betreiber" in user.notice and "GOOGLE_WALLET_ISSUER_ID" not in user.notice
    # The same notice for many rows is shown once.
    assert reasons.notices([user, user, staff]) == [user.notice]


def test_a_pause_keeps_its_cause_and_the_provider_words_for_the_expiry():
    paused = reasons.wrap("paused", Reason("smtp_login_refused", reply="535 no"))
    assert paused.english() == (
        "Paused, will retry next run: SMTP login refused (535 no); check EMAIL_HOST_USER "
        "and EMAIL_HOST_PASSWORD"
    )
    expired = reasons.wrap("expired_paused", reasons.cause(paused), hours=24)
    assert expired.english().startswith("Failed: paused for more than 24 hours: SMTP login")
    with translation.override("de"):
        words = render(expired.code, expired.params, reply=expired.reply)
    assert words == (
        "Fehlgeschlagen: länger als 24 Stunden angehalten: der Mailserver hat die Anmeldung "
        "dieser Plattform abgelehnt; der Mailserver antwortete: „535 no“"
    )


def test_an_unknown_code_from_a_newer_release_shows_the_stored_english():
    assert render("something_new", {}, text="Something new happened.") == "Something new happened."


def test_a_german_job_size_is_grouped(email_kind):
    from bulkjobs.web.rows import count_of

    with translation.override("de"):
        assert count_of(email_kind, 5000) == "5.000 E-Mails"
    with translation.override("en"):
        assert count_of(email_kind, 5000) == "5,000 emails"
