"""What an ESP's API backend (django-anymail, an optional extra) said about one email.

An SMTP server answers each step of a conversation; an ESP's HTTP API answers once per
message, and anymail turns the answer into an exception or a per-recipient status. This
module maps both to what the email kind does with the item, as it does for SMTP replies:

- the recipient rejected or invalid (AnymailRecipientsRefused, or a "rejected"/"invalid"
  status when ANYMAIL["IGNORE_RECIPIENT_STATUS"] lets the send return): the item fails
  and the address goes on the company's suppression list;
- 401/403 (a wrong or revoked API key) or an API that cannot be reached: the whole batch
  pauses, like a refused SMTP login or an unreachable mail server;
- 429 and 5xx: retried later (with the ESP's Retry-After when it gives one);
- another 4xx: the ESP refused this message; the item fails with the ESP's words;
- the request was sent but no answer came (a read timeout, a dropped connection): the ESP
  may have accepted it, so the item fails as "delivery unknown" (at most once);
- anything else (an unsupported feature, an unparsable answer) is left to the engine, as
  every unexpected error is.

Without django-anymail installed, ERRORS is empty and nothing here is ever reached.
"""

from dataclasses import dataclass

from django.utils import timezone

from bulkjobs.decisions import parse_retry_after

from .smtp import DELIVERY_UNKNOWN_PREFIX

try:
    from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
except ImportError:  # the optional extra (requirements-esp.txt) is not installed
    AnymailAPIError = AnymailError = AnymailRecipientsRefused = None

#: The exceptions EmailBatch hands to classify(); () catches nothing.
ERRORS = (AnymailError,) if AnymailError is not None else ()

#: Per-recipient statuses (anymail's normalised ones) meaning the ESP will not deliver.
REFUSED_STATUSES = {"rejected", "invalid"}

PAUSE = "pause"
RETRY = "retry"
FAILED = "failed"

DELIVERY_UNKNOWN_REASON = DELIVERY_UNKNOWN_PREFIX + (
    "{esp} received the request but did not answer ({detail}); not resent automatically. "
    "If it did not arrive, use 'Retry items whose delivery is unknown'."
)


@dataclass(frozen=True)
class Verdict:
    """What to do with the item: PAUSE the batch, RETRY it, or it FAILED; `suppress` adds
    the recipient to the suppression list."""

    action: str
    reason: str
    suppress: bool = False
    retry_after: float | None = None


def classify(exc, esp_name=None):
    """The Verdict for an anymail exception raised while sending one item, or None to let
    the engine treat it as any unexpected error. `esp_name` names the ESP where the
    exception does not (a request that got no answer)."""
    esp = getattr(exc, "esp_name", None) or esp_name or "the ESP"
    if isinstance(exc, AnymailRecipientsRefused):
        status = "/".join(sorted(refused_statuses(exc.email_message))) or "refused"
        words = esp_words(exc.response)
        return Verdict(
            FAILED,
            f"Rejected by {esp}: recipient {status}" + (f" ({words})" if words else ""),
            suppress=True,
        )
    if not isinstance(exc, AnymailAPIError):
        return None
    code = exc.status_code
    if code is None:
        return _unanswered(exc, esp)
    reply = f"{code} {esp_words(exc.response)}".strip()
    if code in (401, 403):
        return Verdict(
            PAUSE,
            f"{esp} refused the API key ({reply}); check the ANYMAIL_… settings of "
            f"{esp} (its API key or server token)",
        )
    if code == 429:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        retry_after = parse_retry_after(header, now=timezone.now())
        return Verdict(RETRY, f"{esp} rate limit: {reply}", retry_after=retry_after)
    if code >= 500:
        return Verdict(RETRY, f"{esp} temporary failure: {reply}")
    if 400 <= code < 500:
        return Verdict(FAILED, f"Refused by {esp}: {reply}")
    return None


def _unanswered(exc, esp):
    """No HTTP answer: was the request sent? Anymail raises `from` the requests error."""
    import requests
    from urllib3.exceptions import NewConnectionError

    cause = exc.__cause__
    if not isinstance(cause, requests.RequestException):
        return None
    # A connection that could not be opened (refused, DNS, TLS, connect timeout) sent
    # nothing: every item would fail alike, so the batch pauses.
    reason = getattr(cause.args[0], "reason", None) if cause.args else None
    if isinstance(cause, (requests.ConnectTimeout, requests.exceptions.SSLError)) or isinstance(
        reason, NewConnectionError
    ):
        return Verdict(PAUSE, f"cannot reach {esp}'s API: {type(cause).__name__}: {cause}")
    # Sent, but the answer never came: the ESP may have accepted the message.
    return Verdict(FAILED, DELIVERY_UNKNOWN_REASON.format(esp=esp, detail=type(cause).__name__))


def refused_statuses(message):
    """The refusing statuses anymail recorded for the message's recipients (empty when the
    ESP accepted them, or the message was not sent through anymail)."""
    status = getattr(message, "anymail_status", None)
    return set(getattr(status, "status", None) or ()) & REFUSED_STATUSES


def esp_words(response):
    """The ESP's own explanation from its answer: the message field of its JSON error
    (Postmark's "Message", Mailgun's "message"...), else the body's text, shortened."""
    if response is None:
        return ""
    try:
        data = response.json()
    except (ValueError, AttributeError):
        data = None
    if isinstance(data, dict):
        for key in ("Message", "message", "error", "errors", "detail"):
            if data.get(key):
                return " ".join(str(data[key]).split())[:300]
    return " ".join(str(getattr(response, "text", "") or "").split())[:300]
