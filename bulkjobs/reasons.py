"""Why a job or an item is where it is: a code with parameters, and its words per reader.

The engine stores a reason as a code (`reason_code`, a short slug) with parameters
(`reason_params`, JSON), and the provider's own words verbatim in a field of their own
(`provider_reply`: an SMTP reply, an APNs reason, a Google error message). The words are
made when the reason is shown, by render() and describe(): in the active language
(English or German), times in the active zone with the zone named, numbers grouped the
local way, quoted values in the language's quotation marks, and the provider's words
after a translated lead-in ("the mail server said: …").

The `reason` column is still written, in the English the engine wrote before codes
existed (Reason.english()): the original system's SQL and older releases read it, and
the engine itself matches prefixes on it (PAUSED_PREFIX, WAITING_PREFIX, the email
kind's "Delivery unknown: "). The registry below holds both texts of each code, so the
two never drift apart. Rows written before codes existed (an empty `reason_code`) are
mapped back to codes when shown, by parse_legacy(), which reads the same English
templates; any other text is shown as it was.

Operator-only words (setting names, commands) are for operators (staff): a company user
reads plain words in the row, and the page shows the longer explanation once
(Rendered.notice), not once per row.

The one place that turns reasons into words: pages, the CSV export, alert emails and the
admin all come here.
"""

import functools
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext_lazy, pgettext_lazy

from cards.locale import format_zoned

#: Start of a paused job's reason; what follows is the pause's cause.
PAUSED_PREFIX = "Paused, will retry next run: "
#: Start of the reason of a job waiting for a rate limit (a short wait, not a pause).
WAITING_PREFIX = "Waiting for "

# Parameters shown as numbers (grouped the local way) or quoted, and those holding a
# reason of their own ({"code", "params"}); a waiting job's `next_at` is shown as a time
# in the reader's zone (_slot).
_NUMBERS = {"count", "failed", "total", "cancelled", "minutes", "hours", "attempts", "timeout"}
_QUOTED = {"sender"}
_NESTED = {"cause", "limit"}


@dataclass(frozen=True)
class Reason:
    """A reason as the engine stores it. `code` "" is a text from elsewhere (a person's
    --reason, a message this module does not know): `text` is shown as it is."""

    code: str
    params: dict = field(default_factory=dict)
    #: the provider's own words, verbatim
    reply: str = ""
    text: str = ""

    def english(self):
        """The English text of the `reason` column (what older releases wrote)."""
        if not self.code:
            return self.text
        spec = _REGISTRY.get(self.code)
        return spec.english_text(self) if spec else self.text

    def __str__(self):
        return self.english()

    def nested(self):
        """This reason as a parameter of another ({"code", "params"}, or {"text"})."""
        if self.code:
            return {"code": self.code, "params": self.params}
        return {"text": self.text}

    def columns(self):
        """The columns a write sets: reason, reason_code, reason_params, provider_reply."""
        return {
            "reason": self.english(),
            "reason_code": self.code,
            "reason_params": self.params,
            "provider_reply": self.reply,
        }


def as_reason(value):
    """A Reason from a Reason or a text; a text the registry knows gets its code (callers
    that still pass the English words, such as `manage.py cancel_job --reason`, store
    codes all the same)."""
    if isinstance(value, Reason):
        return value
    text = str(value or "")
    return parse_legacy(text) or Reason("", text=text)


def of(obj):
    """The Reason a job or item row carries: its code, else its English mapped back."""
    if getattr(obj, "reason_code", ""):
        return Reason(
            obj.reason_code,
            obj.reason_params or {},
            reply=obj.provider_reply or "",
            text=obj.reason,
        )
    return as_reason(obj.reason)


def cause(reason):
    """The cause a wrapping reason (paused, gave up) carries, as a Reason of its own
    with the provider's words; the reason itself when it wraps nothing."""
    inner = reason.params.get("cause")
    if inner is None:
        return reason
    inner = _from_nested(inner)
    return Reason(inner.code, inner.params, reply=reason.reply, text=inner.text)


def columns(value):
    """Reason.columns() of a Reason or a text (see as_reason)."""
    return as_reason(value).columns()


def nested(value):
    """Reason.nested() of a Reason or a text (see as_reason)."""
    return as_reason(value).nested()


def wrap(code, inner, **params):
    """A reason that carries another as its cause: the inner one's provider words move up
    to the outer reason's provider_reply, where every reader finds them."""
    inner = as_reason(inner)
    return Reason(code, {**params, "cause": inner.nested()}, reply=inner.reply)


class Rendered(str):
    """A reason's words; `notice` is the page-level explanation for company users (plain
    words, once per page) of an operator-only cause, or ""."""

    notice = ""

    @classmethod
    def make(cls, text, notice=""):
        rendered = cls(text)
        rendered.notice = str(notice) if notice else ""
        return rendered


def quote(value):
    """A value in the active language's quotation marks: “…” in English, „…“ in German."""
    return _("“%(value)s”") % {"value": value}


def number(value):
    """A number grouped the local way: 5,000 (English), 5.000 (German)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return formats.number_format(value, use_l10n=True, force_grouping=True)


def zoned_time(value, tz=None):
    """A time (a datetime or ISO text) in the reader's zone, the zone named; with its
    date when that is not today there (a daily limit's next slot)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is None:
        return ""
    with timezone.override(tz or timezone.get_current_timezone()):
        today = timezone.localdate() == timezone.localtime(value).date()
        return format_zoned(value, "H:i:s" if today else "Y-m-d H:i:s")


_RATE_UNITS = {
    "s": ngettext_lazy("%(count)s per second", "%(count)s per second", "n"),
    "min": ngettext_lazy("%(count)s per minute", "%(count)s per minute", "n"),
    "h": ngettext_lazy("%(count)s per hour", "%(count)s per hour", "n"),
    "day": ngettext_lazy("%(count)s per day", "%(count)s per day", "n"),
}


def rate_words(rate):
    """ "50/min" as people read it: "50 per minute", "50 pro Minute"."""
    match = re.fullmatch(r"([0-9.]+)/([a-z]+)", str(rate))
    if not match or match.group(2) not in _RATE_UNITS:
        return str(rate)
    count = float(match.group(1))
    # ngettext picks the plural form by a whole number (0.5/s reads as plural).
    plural = int(count) if count.is_integer() else 2
    return _RATE_UNITS[match.group(2)] % {"n": plural, "count": number(count)}


# --- the registry --------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One code: its English `reason` text (a str.format template of the params and
    {reply}, also read back by parse_legacy) and its words for people (a gettext_lazy
    %-template of the rendered params; ngettext_lazy on `count`)."""

    code: str
    english: str
    message: object
    #: what operators read instead (setting names, commands); None: `message`
    staff: object = None
    #: the page-level explanation company users read once instead of the staff words
    notice: object = None
    #: who the provider_reply quotes ("the mail server"): "…; the mail server said: „…“";
    #: None: the reply is what the system reported (an OS error), shown as details
    speaker: object = None
    #: whether parse_legacy() reads `english` back (False for codes with their own parser)
    parse: bool = True

    def english_text(self, reason):
        if self.code in _SPECIAL:
            return _special_english(reason)
        values = {k: _english_value(k, v, reason.reply) for k, v in reason.params.items()}
        return self.english.format(reply=reason.reply, **values)

    def words(self, for_staff):
        return self.staff if for_staff and self.staff is not None else self.message


def _english_value(name, value, reply):
    if name in _NESTED and isinstance(value, dict):
        # The provider's words of a reason's cause are kept with the outer reason.
        inner = _from_nested(value)
        return Reason(inner.code, inner.params, reply=reply, text=inner.text).english()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _from_nested(value):
    if not isinstance(value, dict):
        return Reason("", text=str(value))
    if value.get("code"):
        return Reason(value["code"], value.get("params") or {})
    return Reason("", text=str(value.get("text", "")))


MAIL_SERVER = gettext_lazy("the mail server")
MAIL_SETTINGS_NOTICE = gettext_lazy(
    "This platform's mail server refuses its settings. The platform's operator has to fix "
    "them; the emails wait until then and nothing is lost."
)
WALLET_SETUP_NOTICE = gettext_lazy(
    "A wallet platform is not set up on this platform yet, so its passes are skipped. "
    "The platform's operator has to set it up; the other platform is synced as usual."
)
WALLET_REFUSED_NOTICE = gettext_lazy(
    "A wallet platform refuses this platform's access, so its updates wait; nothing is "
    "lost. The platform's operator has to fix its settings, and the waiting updates then "
    "go out by themselves. The other platform is synced as usual."
)
GOOGLE = gettext_lazy("Google")

_SPECS = [
    # --- a job's end ---------------------------------------------------------------
    Spec(
        "all_succeeded",
        "All {count} item(s) succeeded.",
        ngettext_lazy("%(number)s item succeeded.", "All %(number)s items succeeded.", "count"),
        parse=False,
    ),
    Spec(
        "some_failed",
        "{failed} of {total} item(s) failed; see the job's items for reasons.",
        ngettext_lazy(
            "%(failed)s of %(number)s item failed; its reason is shown with it.",
            "%(failed)s of %(number)s items failed; each one's reason is shown with it.",
            "count",
        ),
        parse=False,
    ),
    Spec(
        "expired_inactive",
        "Expired: no progress for {minutes} minutes.",
        gettext_lazy("Failed: no progress for %(minutes)s minutes."),
    ),
    Spec(
        "job_expired",
        "Job expired: no progress for {minutes} minutes.",
        gettext_lazy("Not done: the job made no progress for %(minutes)s minutes."),
    ),
    Spec(
        "expired_paused",
        "Failed: paused for more than {hours} hours: {cause}",
        gettext_lazy("Failed: paused for more than %(hours)s hours: %(cause)s"),
    ),
    Spec(
        "cancelled",
        "Cancelled by {by}",
        gettext_lazy("Cancelled"),
        parse=False,
    ),
    Spec("retrying", "Retrying failed items.", gettext_lazy("Retrying the failed items.")),
    Spec(
        "being_deleted",
        "Being deleted: finished longer ago than the retention period.",
        gettext_lazy("Being deleted: finished longer ago than the retention period."),
    ),
    Spec(
        "automatic_update",
        "Automatic update: cards changed or deleted since the last run.",
        gettext_lazy("Automatic update: cards were changed or deleted."),
    ),
    # --- pauses and waits ----------------------------------------------------------
    Spec(
        "paused",
        PAUSED_PREFIX + "{cause}",
        gettext_lazy("Paused, tried again by the next run: %(cause)s"),
    ),
    Spec(
        "waiting",
        WAITING_PREFIX + "{limit}; next slot at {slot}",
        gettext_lazy("Waiting for %(limit)s; next slot at %(next_at)s"),
        parse=False,
    ),
    Spec(
        "company_pace",
        "the company's pace ({rate})",
        gettext_lazy("the company's pace (%(rate)s)"),
    ),
    Spec(
        "mail_server_limit",
        "the mail server's rate limit ({rate})",
        gettext_lazy("the mail server's rate limit (%(rate)s)"),
    ),
    Spec(
        "provider_limit",
        "the {provider} rate limit ({rate})",
        gettext_lazy("the %(provider)s rate limit (%(rate)s)"),
    ),
    Spec(
        "smtp_login_refused",
        "SMTP login refused ({reply}); check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD",
        gettext_lazy("the mail server refused this platform's login"),
        staff=gettext_lazy(
            "the mail server refused the login; check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD"
        ),
        notice=MAIL_SETTINGS_NOTICE,
        speaker=MAIL_SERVER,
    ),
    Spec(
        "sender_refused",
        "the mail server refused the sender {sender} ({reply}); check DEFAULT_FROM_EMAIL",
        gettext_lazy("the mail server refused the sender address %(sender)s"),
        staff=gettext_lazy(
            "the mail server refused the sender address %(sender)s; check DEFAULT_FROM_EMAIL"
        ),
        notice=MAIL_SETTINGS_NOTICE,
        speaker=MAIL_SERVER,
    ),
    Spec(
        "mail_server_unreachable",
        "cannot connect to the mail server: {reply}",
        gettext_lazy("the mail server cannot be reached"),
    ),
    Spec(
        "mail_server_silent",
        "the mail server stopped answering after accepting a message (no reply within "
        "{timeout} s): its delivery is unknown, and the other emails wait until the server "
        "answers again",
        gettext_lazy(
            "the mail server stopped answering after accepting an email (no reply within "
            "%(timeout)s s): its delivery is unknown, and the other emails wait until the "
            "server answers again"
        ),
    ),
    Spec(
        "batch_error",
        "unexpected error: {reply}",
        gettext_lazy("an unexpected error in this platform"),
        staff=gettext_lazy("an unexpected error (see the processor's log)"),
    ),
    Spec(
        "no_wallet_platform",
        "no wallet platform is configured ({reply})",
        gettext_lazy("neither Apple Wallet nor Google Wallet is set up on this platform"),
        staff=gettext_lazy("no wallet platform is configured"),
        notice=WALLET_SETUP_NOTICE,
    ),
    Spec(
        "wallet_not_configured",
        "{platform} is not configured: set {settings}.",
        gettext_lazy("%(platform)s is not set up on this platform"),
        staff=gettext_lazy("%(platform)s is not configured: set %(settings)s."),
        notice=WALLET_SETUP_NOTICE,
    ),
    Spec(
        "wallet_unavailable",
        "{platform} unavailable: {reply}",
        gettext_lazy("%(platform)s cannot be used right now"),
    ),
    Spec(
        "wallet_settings_invalid",
        "{platform} settings are invalid: {reply}",
        gettext_lazy("the %(platform)s settings of this platform are invalid"),
        notice=WALLET_SETUP_NOTICE,
    ),
    # --- an item's outcome ---------------------------------------------------------
    Spec(
        "gave_up",
        "Gave up after {attempts} attempts: {cause}",
        gettext_lazy("Gave up after %(attempts)s attempts: %(cause)s"),
    ),
    Spec(
        "unexpected_error",
        "Unexpected error: {reply}",
        gettext_lazy("An unexpected error in this platform"),
        staff=gettext_lazy("An unexpected error (see the processor's log)"),
    ),
    Spec(
        "card_deleted",
        "Not sent: the card was deleted.",
        gettext_lazy("Not sent: the card was deleted."),
    ),
    Spec(
        "card_deleted_sync",
        "Not synced: the card was deleted.",
        gettext_lazy("Not synced: the card was deleted."),
    ),
    Spec(
        "suppressed",
        "Not sent: the address unsubscribed or bounced before (suppression list).",
        gettext_lazy("Not sent: the address unsubscribed or bounced before (suppression list)."),
    ),
    Spec(
        "smtp_rejected",
        "Rejected at {stage}: {reply}",
        gettext_lazy("Refused by the mail server (at %(stage)s)"),
        speaker=MAIL_SERVER,
    ),
    # A permanent refusal classified by its enhanced status code (emails/status.py): the
    # `reason` column keeps the English of smtp_rejected, which the original's SQL reads.
    Spec(
        "smtp_address_unknown",
        "Rejected at {stage}: {reply}",
        gettext_lazy(
            "The address does not exist (refused by the mail server at %(stage)s); it is "
            "not emailed again"
        ),
        speaker=MAIL_SERVER,
        parse=False,
    ),
    Spec(
        "smtp_mailbox_disabled",
        "Rejected at {stage}: {reply}",
        gettext_lazy(
            "The mailbox is disabled (refused by the mail server at %(stage)s); it is not "
            "emailed again"
        ),
        speaker=MAIL_SERVER,
        parse=False,
    ),
    Spec(
        "smtp_mailbox_full",
        "Rejected at {stage}: {reply}",
        gettext_lazy("The mailbox is full (refused by the mail server at %(stage)s)"),
        speaker=MAIL_SERVER,
        parse=False,
    ),
    Spec(
        "smtp_policy",
        "Rejected at {stage}: {reply}",
        gettext_lazy(
            "Blocked by the receiving mail server's policy, for example its spam protection "
            "or this platform's reputation (at %(stage)s); the address stays on the list"
        ),
        speaker=MAIL_SERVER,
        parse=False,
    ),
    Spec(
        "smtp_routing",
        "Rejected at {stage}: {reply}",
        gettext_lazy("The email could not be routed to the recipient's mail server (at %(stage)s)"),
        speaker=MAIL_SERVER,
        parse=False,
    ),
    Spec(
        "smtp_temporary",
        "Temporary failure at {stage}: {reply}",
        gettext_lazy("Refused for now by the mail server (at %(stage)s)"),
        speaker=MAIL_SERVER,
    ),
    Spec(
        "smtp_closing",
        "Server closing connection: {reply}",
        gettext_lazy("The mail server closed the connection"),
        speaker=MAIL_SERVER,
    ),
    Spec(
        "connection_lost",
        "Connection to the mail server lost: {reply}",
        gettext_lazy("The connection to the mail server was lost"),
    ),
    Spec(
        "delivery_unknown",
        "Delivery unknown: the mail server received the whole message but the connection "
        "was lost before it confirmed ({reply}); not resent automatically. If it did not "
        "arrive, use 'Retry items whose delivery is unknown'.",
        gettext_lazy(
            "Delivery unknown: the mail server received the whole email but the connection "
            "was lost before it confirmed; not resent automatically. If it did not arrive, "
            "use %(action)s."
        ),
    ),
    Spec(
        "email_interrupted",
        "Interrupted during delivery; delivery is unknown and it was not resent. If it did "
        "not arrive, use 'Retry items whose delivery is unknown'.",
        gettext_lazy(
            "Interrupted during delivery; delivery is unknown and it was not resent. If it "
            "did not arrive, use %(action)s."
        ),
    ),
    Spec(
        "email_failover",
        "Delivery unknown: the database failed over (to a standby replicated "
        "asynchronously) while this email may have been sent; not resent. If it did not "
        "arrive, use 'Retry items whose delivery is unknown'.",
        gettext_lazy(
            "Delivery unknown: the platform's database was switched to a standby while "
            "this email may have been sent; not resent. If it did not arrive, use "
            "%(action)s."
        ),
    ),
    Spec(
        "interrupted",
        "Interrupted during processing; not retried automatically.",
        gettext_lazy("Interrupted during processing; not retried automatically."),
    ),
    Spec(
        "failover",
        "The database failed over while this item may have been processed; not redone "
        "automatically.",
        gettext_lazy(
            "The platform's database was switched to a standby while this item may have "
            "been processed; not redone automatically."
        ),
    ),
    Spec(
        "wallet_synced",
        "{summary}.",
        gettext_lazy("%(summary)s."),
        parse=False,
    ),
    # Before google_http, whose English would match it too.
    Spec(
        "google_field_refused",
        "Google Wallet refused the card's {field} ({path}): HTTP {status}: {reply}",
        gettext_lazy("Google Wallet refused the card's %(field)s; please correct it"),
        speaker=GOOGLE,
    ),
    Spec(
        "google_http",
        "Google Wallet {action}: HTTP {status}: {reply}",
        gettext_lazy("Google Wallet refused the request (HTTP %(status)s)"),
        speaker=gettext_lazy("Google"),
    ),
    Spec(
        "apns_refused_push",
        "APNs refused the push: {reply}",
        gettext_lazy("Apple refused the push"),
        speaker=gettext_lazy("Apple"),
    ),
    # --- an email service provider's (ESP's) answers (emails/esp.py) --------------------
    Spec(
        "esp_delivery_unknown",
        "Delivery unknown: {esp} received the request but did not answer ({reply}); not "
        "resent automatically. If it did not arrive, use 'Retry items whose delivery is "
        "unknown'.",
        gettext_lazy(
            "Delivery unknown: %(esp)s received the request but did not answer; not resent "
            "automatically. If it did not arrive, use %(action)s."
        ),
    ),
    Spec(
        "esp_recipient_refused_said",
        "Rejected by {esp}: recipient {status} ({reply})",
        gettext_lazy("Refused by %(esp)s (recipient status: %(status)s)"),
        speaker=gettext_lazy("the email service"),
    ),
    Spec(
        "esp_recipient_refused",
        "Rejected by {esp}: recipient {status}",
        gettext_lazy("Refused by %(esp)s (recipient status: %(status)s)"),
    ),
    Spec(
        "esp_key_refused",
        "{esp} refused the API key ({reply}); check the ANYMAIL_… settings of {esp} (its API "
        "key or server token)",
        gettext_lazy("%(esp)s refused this platform's access key"),
        staff=gettext_lazy(
            "%(esp)s refused the API key; check its ANYMAIL_… settings (API key or server token)"
        ),
        notice=MAIL_SETTINGS_NOTICE,
        speaker=gettext_lazy("the email service"),
    ),
    Spec(
        "esp_unreachable",
        "cannot reach {esp}'s API: {reply}",
        gettext_lazy("%(esp)s cannot be reached"),
    ),
    Spec(
        "esp_rate_limit",
        "{esp} rate limit: {reply}",
        gettext_lazy("%(esp)s asked to send more slowly"),
        speaker=gettext_lazy("the email service"),
    ),
    Spec(
        "esp_temporary",
        "{esp} temporary failure: {reply}",
        gettext_lazy("%(esp)s failed for now"),
        speaker=gettext_lazy("the email service"),
    ),
    Spec(
        "esp_refused",
        "Refused by {esp}: {reply}",
        gettext_lazy("Refused by %(esp)s"),
        speaker=gettext_lazy("the email service"),
    ),
    # --- the wallet providers' answers (wallet/apple/apns.py, wallet/google/client.py) --
    Spec(
        "apns_unreachable",
        "APNs unreachable: {reply}",
        gettext_lazy("Apple's push service cannot be reached"),
    ),
    Spec(
        "apns_refused",
        "APNs refused the push ({reply}): {hint}.",
        gettext_lazy("Apple refused this platform's push credentials"),
        staff=gettext_lazy("APNs refused the push: %(hint)s"),
        notice=WALLET_REFUSED_NOTICE,
        speaker=gettext_lazy("Apple"),
    ),
    # A platform refusing this installation's access pauses that platform only
    # (wallet/batch.py); the staff words say what to fix, {hint} is its English.
    Spec(
        "apns_certificate_refused",
        "APNs refused the pass certificate (TLS {alert}): {hint}.",
        gettext_lazy("Apple refused this platform's pass certificate"),
        staff=gettext_lazy(
            "APNs refused the pass certificate. Check APPLE_PASS_CERT and APPLE_PASS_KEY "
            "(or APPLE_PASS_P12): APNs takes only a current Pass Type ID certificate that "
            "Apple issued for APPLE_PASS_TYPE_ID. Or use token auth (APNS_KEY_FILE, "
            "APNS_KEY_ID)."
        ),
        notice=WALLET_REFUSED_NOTICE,
    ),
    Spec(
        "google_permission_denied",
        "Google Wallet denied permission (HTTP 403: {reply}): {hint}.",
        gettext_lazy("Google Wallet refused this platform's access"),
        staff=gettext_lazy(
            "Google Wallet denied permission. Add the service account (the client_email "
            "of GOOGLE_WALLET_SERVICE_ACCOUNT_FILE) as a user of the issuer "
            "GOOGLE_WALLET_ISSUER_ID in the Google Pay & Wallet Console (Google Wallet "
            "API, Users), and check that the issuer id is right."
        ),
        notice=WALLET_REFUSED_NOTICE,
        speaker=GOOGLE,
    ),
    Spec(
        "google_unauthorized",
        "Google Wallet refused the credentials (HTTP 401, also with a new token: {reply}): {hint}.",
        gettext_lazy("Google Wallet refused this platform's access"),
        staff=gettext_lazy(
            "Google Wallet refused the credentials, also with a new token. Check that "
            "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE holds a current key of a service account "
            "whose Cloud project has the Google Wallet API enabled, and that the service "
            "account is a user of the issuer in the Google Pay & Wallet Console."
        ),
        notice=WALLET_REFUSED_NOTICE,
        speaker=GOOGLE,
    ),
    Spec(
        "google_key_refused",
        "Google refused the service-account key ({reply}): {hint}.",
        gettext_lazy("Google refused this platform's Wallet key"),
        staff=gettext_lazy(
            "Google refused the service-account key. Check "
            "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE: the key may have been deleted or disabled "
            "in the Google Cloud console (IAM, Service accounts, Keys)."
        ),
        notice=WALLET_REFUSED_NOTICE,
        speaker=GOOGLE,
    ),
    Spec(
        "apns_timeout",
        "APNs did not answer within APNS_TIMEOUT = {timeout} s.",
        gettext_lazy("Apple's push service did not answer within %(timeout)s s"),
    ),
    Spec(
        "apns_connection_lost",
        "APNs connection lost before it answered ({reply}).",
        gettext_lazy("The connection to Apple's push service was lost before it answered"),
    ),
    Spec(
        "google_unreachable",
        "Cannot reach Google Wallet ({request}).",
        gettext_lazy("Google Wallet cannot be reached"),
    ),
    Spec(
        "google_timeout",
        "Google Wallet did not answer within GOOGLE_WALLET_TIMEOUT = {timeout} s ({request}).",
        gettext_lazy("Google Wallet did not answer within %(timeout)s s"),
    ),
    Spec(
        "google_connection_lost",
        "Connection to Google Wallet lost before it answered ({request}).",
        gettext_lazy("The connection to Google Wallet was lost before it answered"),
    ),
    Spec(
        "wallet_platform",
        "{platform}: {cause}",
        gettext_lazy("%(platform)s: %(cause)s"),
        parse=False,
    ),
    Spec(
        "detail_temporary",
        "Temporary failure: {cause}",
        gettext_lazy("Temporary failure: %(cause)s"),
    ),
    # --- a wallet item's per-platform detail (apple_detail, google_detail) -----------
    Spec("pass_up_to_date", "The pass is up to date.", gettext_lazy("The pass is up to date.")),
    Spec(
        "pass_issued",
        "Pass issued; no device holds it yet.",
        gettext_lazy("Pass issued; no device holds it yet."),
    ),
    Spec(
        "object_up_to_date",
        "The object is up to date.",
        gettext_lazy("The pass is up to date."),
    ),
    Spec("object_updated", "Object {object} updated.", gettext_lazy("Pass %(object)s updated.")),
    Spec("detail_card_deleted", "Card deleted.", gettext_lazy("Card deleted.")),
    Spec(
        "devices_notified",
        "Pass updated; {devices} device(s) notified.",
        ngettext_lazy(
            "Pass updated; %(number)s device notified.",
            "Pass updated; %(number)s devices notified.",
            "count",
        ),
        parse=False,
    ),
]
_REGISTRY = {spec.code: spec for spec in _SPECS}

#: The wallet platforms' results as the item's reason names them (PlatformResult labels).
_WALLET_RESULTS = {
    "synced": pgettext_lazy("wallet result", "synced"),
    "unchanged": pgettext_lazy("wallet result", "unchanged"),
    "skipped (not configured)": pgettext_lazy("wallet result", "skipped (not set up)"),
    "failed": pgettext_lazy("wallet result", "failed"),
}
#: A card's fields as wallet/google/client.py CARD_FIELDS names them in English.
_CARD_FIELDS = {
    "phone": gettext_lazy("phone"),
    "mobile": gettext_lazy("mobile"),
    "email": gettext_lazy("email"),
    "website": gettext_lazy("website"),
    "address": gettext_lazy("address"),
    "card link": gettext_lazy("card link"),
    "name": gettext_lazy("name"),
    "job title": gettext_lazy("job title"),
    "company name": gettext_lazy("company name"),
    "logo": gettext_lazy("logo"),
    "brand colour": gettext_lazy("brand colour"),
    "QR code": gettext_lazy("QR code"),
}
_CANCELLED_BY = {
    "user": gettext_lazy("Cancelled by a user of the company"),
    "admin": gettext_lazy("Cancelled by an operator"),
}


# --- writing: the English of the `reason` column for the codes with a shape of their own


def completed(succeeded, failed, total, cancelled):
    """The reason of a completed job, from its items' counts."""
    if failed:
        code, params = "some_failed", {"failed": failed, "total": total, "count": total}
    else:
        code, params = "all_succeeded", {"count": succeeded}
    if cancelled:
        params["cancelled"] = cancelled
    return Reason(code, params)


def waiting(limit, next_at):
    """The reason of a job a rate limit holds back: `limit` names it (a Reason or the
    English words, "the company's pace (50/min)"), `next_at` is a Unix time."""
    when = datetime.fromtimestamp(next_at, tz=UTC)
    return Reason("waiting", {"limit": nested(limit), "next_at": when.isoformat()})


def cancelled(by="user"):
    """A person's cancel: by "user" (the company's pages) or "admin" (admin, command)."""
    return Reason("cancelled", {"by": by})


def _special_english(reason):
    params = reason.params
    if reason.code == "all_succeeded":
        text = f"All {params.get('count', 0)} item(s) succeeded."
    elif reason.code == "some_failed":
        text = (
            f"{params.get('failed', 0)} of {params.get('total', 0)} item(s) failed; "
            "see the job's items for reasons."
        )
    elif reason.code == "cancelled":
        return f"Cancelled by {params.get('by', 'user')}"
    elif reason.code == "waiting":
        slot = params.get("slot") or ""
        if params.get("next_at"):
            # As before codes: the time of day in the site's TIME_ZONE.
            slot = f"{timezone.localtime(parse_datetime(params['next_at'])):%H:%M:%S}"
        limit = _from_nested(params.get("limit")).english()
        return f"{WAITING_PREFIX}{limit}; next slot at {slot}"
    elif reason.code == "wallet_synced":
        parts = []
        for platform in ("apple", "google"):
            if params.get(platform):
                label = "Apple Wallet" if platform == "apple" else "Google Wallet"
                note = params.get(f"{platform}_note")
                parts.append(f"{label} {params[platform]}" + (f" ({note})" if note else ""))
        return "; ".join(parts) + "."
    elif reason.code == "wallet_platform":
        inner = _from_nested(params.get("cause"))
        inner = Reason(inner.code, inner.params, reply=reason.reply, text=inner.text)
        return f"{params.get('platform', '')}: {inner.english()}"
    elif reason.code == "devices_notified":
        return f"Pass updated; {params.get('count', 0)} device(s) notified."
    else:
        return None
    if params.get("cancelled"):
        text += f" {params['cancelled']} cancelled."
    return text


#: Codes whose English has a shape of its own (optional parts, a time, a list, a label).
_SPECIAL = {
    "all_succeeded",
    "some_failed",
    "cancelled",
    "waiting",
    "wallet_synced",
    "devices_notified",
    "wallet_platform",
}


# --- reading the English back: rows written before codes existed ----------------------


def _pattern(template):
    """A regex matching a Spec's English template, its placeholders as named groups."""
    parts = re.split(r"\{(\w+)\}", template)
    regex, seen = "", set()
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex += re.escape(part)
        elif part in seen:
            regex += f"(?P={part})"  # the same value again ("… of {esp}")
        else:
            regex += f"(?P<{part}>.+?)"
            seen.add(part)
    return re.compile(regex, re.DOTALL)


_PATTERNS = [(spec, _pattern(spec.english)) for spec in _SPECS if spec.parse]


def _typed(name, text):
    if name in _NUMBERS:
        try:
            value = float(text)
        except ValueError:
            return text
        return int(value) if value.is_integer() else value
    return text


def _parse_special(text):
    match = re.fullmatch(
        r"(?:All (?P<count>\d+) item\(s\) succeeded\."
        r"|(?P<failed>\d+) of (?P<total>\d+) item\(s\) failed; see the job's items for reasons\.)"
        r"(?: (?P<cancelled>\d+) cancelled\.)?",
        text,
    )
    if match:
        numbers = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        code = "some_failed" if "failed" in numbers else "all_succeeded"
        if code == "some_failed":
            numbers["count"] = numbers["total"]
        return Reason(code, numbers)
    match = re.fullmatch(r"Cancelled by (user|admin)", text)
    if match:
        return cancelled(match.group(1))
    match = re.fullmatch(re.escape(WAITING_PREFIX) + r"(.+); next slot at (\d\d:\d\d:\d\d)", text)
    if match:
        return Reason("waiting", {"limit": nested(match.group(1)), "slot": match.group(2)})
    match = re.fullmatch(r"(Apple Wallet|Google Wallet): (.+)", text, re.DOTALL)
    if match:
        # One platform's error (wallet/batch.py labels those that do not name it).
        inner = as_reason(match.group(2))
        params = {"platform": match.group(1), "cause": inner.nested()}
        return Reason("wallet_platform", params, reply=inner.reply)
    match = re.fullmatch(r"Pass updated; (\d+) device\(s\) notified\.", text)
    if match:
        return Reason("devices_notified", {"count": int(match.group(1))})
    return _parse_wallet_synced(text)


_WALLET_PART = re.compile(
    r"(Apple|Google) Wallet (synced|unchanged|skipped \(not configured\)|failed)(?: \((.+)\))?"
)


def _parse_wallet_synced(text):
    if not text.endswith(".") or not text.startswith(("Apple Wallet ", "Google Wallet ")):
        return None
    params = {}
    for part in text[:-1].split("; "):
        match = _WALLET_PART.fullmatch(part)
        if not match:
            return None
        platform = match.group(1).lower()
        params[platform] = match.group(2)
        if match.group(3):
            params[f"{platform}_note"] = match.group(3)
    return Reason("wallet_synced", params)


def parse_legacy(text):
    """The Reason of an English reason the engine wrote (before codes existed, or for a
    caller that passes words), or None for any other text."""
    text = (text or "").strip()
    if not text:
        return None
    return _parse(text)


# A job page reads its items' attempt logs, whose texts repeat: each is matched once.
# (Reasons are not changed once made, so the cached ones can be shared.)
@functools.lru_cache(maxsize=2048)
def _parse(text):
    special = _parse_special(text)
    if special is not None:
        return special
    for spec, pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        if not match:
            continue
        params, reply = {}, ""
        for name, value in match.groupdict().items():
            if name == "reply":
                reply = value
            elif name in _NESTED:
                inner = as_reason(value)
                params[name] = inner.nested()
                reply = reply or inner.reply
            else:
                params[name] = _typed(name, value)
        return Reason(spec.code, params, reply=reply)
    return None


# --- showing -----------------------------------------------------------------------


def render(code, params=None, *, reply="", for_staff=False, tz=None, text=""):
    """A reason's words for the reader: in the active language, times in `tz` (the
    active zone by default) with the zone named. `text` is what is shown for an unknown
    code (one written by a newer release): the stored English. Returns a Rendered
    (a str whose `notice` a company user's page shows once)."""
    words, notice, speaker = _words(code, params or {}, for_staff, tz)
    if words is None:
        return Rendered.make(text)
    words = capfirst(words)
    if reply and speaker is not None:
        words = _("%(reason)s; %(speaker)s said: %(reply)s") % {
            "reason": words.rstrip("."),
            "speaker": speaker,
            "reply": quote(reply),
        }
    elif reply:
        # Not a provider's answer but what the system reported (an OS error, an
        # exception): shown verbatim all the same.
        words = _("%(reason)s (details: %(reply)s)") % {
            "reason": words.rstrip("."),
            "reply": quote(reply),
        }
    return Rendered.make(words, notice)


def _words(code, params, for_staff, tz):
    """(words without the provider's reply, notice, who the reply quotes), or
    (None, "", None) for an unknown code. The innermost reason names the speaker."""
    spec = _REGISTRY.get(code)
    if spec is None:
        return None, "", None
    values, notices, speaker = {}, [], spec.speaker
    for name, value in params.items():
        if name in _NESTED:
            inner = _from_nested(value)
            if inner.code:
                inner_words, inner_notice, inner_speaker = _words(
                    inner.code, inner.params, for_staff, tz
                )
                notices.append(inner_notice)
                speaker = inner_speaker if inner_speaker is not None else speaker
                values[name] = inner_words if inner_words is not None else inner.text
            else:
                values[name] = inner.text
        elif name in _NUMBERS:
            values[name] = number(value)
        elif name in _QUOTED:
            values[name] = quote(value)
        elif name == "rate":
            values[name] = rate_words(value)
        else:
            values[name] = value
    notices.append("" if for_staff else (spec.notice or ""))
    if code == "cancelled":
        words = str(_CANCELLED_BY.get(params.get("by"), spec.message))
    elif code == "waiting":
        values["next_at"] = _slot(params, tz)
        words = spec.message % values
    elif code == "google_field_refused":
        values["field"] = _CARD_FIELDS.get(params.get("field"), params.get("field", ""))
        words = spec.message % values
    elif code == "wallet_synced":
        words = spec.message % {"summary": _wallet_summary(params, for_staff)}
        notices.append("" if for_staff or "skipped" not in str(params) else WALLET_SETUP_NOTICE)
    elif code in ("all_succeeded", "some_failed", "devices_notified"):
        # ngettext_lazy picks the form by the raw `count`; `number` is what is shown.
        values["number"] = number(params.get("count", 0))
        values["count"] = params.get("count", 0)
        words = spec.message % values
        if params.get("cancelled"):
            words += " " + (_("%(number)s cancelled.") % {"number": number(params["cancelled"])})
    else:
        if code in (
            "delivery_unknown",
            "email_interrupted",
            "email_failover",
            "esp_delivery_unknown",
        ):
            values["action"] = quote(_("Retry items whose delivery is unknown"))
        try:
            words = spec.words(for_staff) % values
        except (KeyError, TypeError, ValueError):
            return None, "", None
    return str(words), next((str(n) for n in notices if n), ""), speaker


def _slot(params, tz):
    if params.get("next_at"):
        return zoned_time(params["next_at"], tz)
    slot = params.get("slot")
    if not slot:
        return ""
    # Written before codes, as a time of day in the site's TIME_ZONE: taken as today's.
    site = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    try:
        hour, minute, second = (int(part) for part in slot.split(":"))
    except ValueError:
        return slot
    when = timezone.now().astimezone(site).replace(hour=hour, minute=minute, second=second)
    return zoned_time(when, tz)


def _wallet_summary(params, for_staff):
    parts = []
    for platform, label in (("apple", "Apple Wallet"), ("google", "Google Wallet")):
        result = params.get(platform)
        if not result:
            continue
        words = _WALLET_RESULTS.get(result, result)
        part = f"{label}: {words}"
        note = params.get(f"{platform}_note")
        if note and for_staff:
            part += f" ({note})"
        parts.append(part)
    return "; ".join(parts)


def describe(obj, *, for_staff=False, tz=None, prefix=""):
    """The words of a job's or item's reason (the fields `prefix` + reason, reason_code,
    reason_params, provider_reply): its code's, else those of the English it carries
    (parse_legacy), else that text as it is."""
    text = getattr(obj, f"{prefix}reason", "") or ""
    code = getattr(obj, f"{prefix}reason_code", "") or ""
    if code:
        params = getattr(obj, f"{prefix}reason_params", None) or {}
        reply = getattr(obj, f"{prefix}provider_reply", "") or ""
        return render(code, params, reply=reply, for_staff=for_staff, tz=tz, text=text)
    return describe_text(text, for_staff=for_staff, tz=tz)


def describe_text(text, *, for_staff=False, tz=None):
    """The words of a reason known only by its English text (an older row, an attempt
    log entry, a wallet item's detail): mapped to its code when it is one, else as is."""
    parsed = parse_legacy(text)
    if parsed is None:
        return Rendered.make(text or "")
    return render(
        parsed.code, parsed.params, reply=parsed.reply, for_staff=for_staff, tz=tz, text=text
    )


def pause_cause(job, *, for_staff=False, tz=None):
    """Why a paused job waits, in words (its reason without "Paused, …: ")."""
    reason = of(job)
    if reason.code != "paused":
        return describe(job, for_staff=for_staff, tz=tz)
    inner = cause(reason)
    if not inner.code:
        return Rendered.make(inner.text)
    return render(inner.code, inner.params, reply=inner.reply, for_staff=for_staff, tz=tz)


def notices(rendered):
    """The distinct page-level notices of some Rendered reasons, in order."""
    seen = []
    for item in rendered:
        notice = getattr(item, "notice", "")
        if notice and notice not in seen:
            seen.append(notice)
    return seen
