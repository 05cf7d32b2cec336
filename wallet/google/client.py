"""Google Wallet REST client: sends the genericClass and genericObject bodies of
wallet/google/payload.py, one class per company and one object per business card.

The class is sent when it differs from what was last sent, as recorded in
GoogleWalletClass, so a batch costs no class request otherwise.

Talks to the walletobjects REST API through google-auth's AuthorizedSession (a
requests.Session that fetches and refreshes the service-account OAuth token), so no
googleapiclient is needed. Every URL comes from settings, which is what lets tests run
the real code against a loopback server.

Rate limits: "Calls to the Google Wallet API are rate limited to 20 requests per second"
(Google Wallet API FAQ, as quoted in /work/shared/reference/research/wallet.md section 2.2;
a secondary source, the FAQ page itself was not reachable). Every API request first takes
a token from the `GOOGLE_WALLET_RATE_LIMIT` bucket (default 20/s, wallet/limits.py), which
every thread and process shares, so concurrent batches stay under it together. Should
Google still answer 429 or 5xx, that is a TransientError (with Retry-After when Google
sends one) and the job engine retries with exponential backoff and jitter as Google asks.
"""

import contextlib
import functools
import hashlib
import re
import threading
from urllib.parse import quote

import requests
from django.utils import timezone
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import AuthorizedSession
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import service_account
from urllib3.exceptions import NewConnectionError

from bulkjobs.decisions import parse_retry_after
from wallet import limits
from wallet.errors import (
    NotConfigured,
    PermanentError,
    ProviderError,
    TransientError,
    Unreachable,
)
from wallet.models import GoogleWalletClass

from . import conf
from .payload import body_hash, build_class, build_object

SYNCED = "synced"
UNCHANGED = "unchanged"


_credentials_cache = {}
_credentials_lock = threading.Lock()
# Batches of several companies start at once in one run's threads and share the cached
# credentials: one of them fetches the token while the others wait for it, rather than
# each fetching its own.
_refresh_lock = threading.Lock()


def _without_nulls(body):
    # An insert has nothing to clear, and Google rejects nulls it has no use for.
    return {key: value for key, value in body.items() if value is not None}


def _credentials(account):
    """Process-wide credentials per key, so a --loop worker reuses its token across batches."""
    key = (
        account.email,
        account.info["token_uri"],
        hashlib.sha256(account.private_key.encode()).hexdigest(),
    )
    with _credentials_lock:
        creds = _credentials_cache.get(key)
        if creds is None:
            creds = service_account.Credentials.from_service_account_info(
                account.info, scopes=[conf.SCOPE]
            )
            _credentials_cache[key] = creds
    return creds


#: What to fix when Google refuses this installation's access, by HTTP status: every
#: request would be refused alike, so Google Wallet pauses (wallet/batch.py).
PERMISSION_HINT = (
    "add the service account (the client_email of GOOGLE_WALLET_SERVICE_ACCOUNT_FILE) as a "
    "user of the issuer GOOGLE_WALLET_ISSUER_ID in the Google Pay & Wallet Console "
    "(Google Wallet API, Users), and check that the issuer id is right"
)
UNAUTHORIZED_HINT = (
    "check that GOOGLE_WALLET_SERVICE_ACCOUNT_FILE holds a current key of a service account "
    "with the Google Wallet API enabled in its Cloud project, and that the service account "
    "is a user of the issuer in the Google Pay & Wallet Console"
)
KEY_REFUSED_HINT = (
    "check GOOGLE_WALLET_SERVICE_ACCOUNT_FILE: the key may have been deleted or disabled "
    "in the Google Cloud console (IAM, Service accounts, Keys)"
)


#: The card's fields as a 400's field path names them (Google's object fields, or the id
#: of a text or link module, wallet/google/payload.py): the words the item's reason uses.
CARD_FIELDS = {
    "phone": "phone",
    "mobile": "mobile",
    "email": "email",
    "website": "website",
    "address": "address",
    "card": "card link",
    "header": "name",
    "subheader": "job title",
    "cardTitle": "company name",
    "logo": "logo",
    "hexBackgroundColor": "brand colour",
    "barcode": "QR code",
}
_MODULE_PATH = re.compile(r"(textModulesData|linksModuleData\.uris)\[(\d+)\]")
_MESSAGE_FIELD = re.compile(r"""field ['"]([\w.\[\]]+)['"]|Unknown name ['"]([\w.]+)['"]""")


def refused_field(response, body):
    """(card field words, Google's field path) of a 400 Google gave for `body`: from the
    google.rpc.BadRequest field violation in its error details, else from its message
    ("Invalid value for field 'hexBackgroundColor'"); (None, None) when it names none."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return None, None
    path = None
    for detail in error.get("details") or []:
        for violation in detail.get("fieldViolations") or []:
            path = path or violation.get("field")
    if path is None:
        match = _MESSAGE_FIELD.search(str(error.get("message", "")))
        path = match and (match.group(1) or match.group(2))
    if not path:
        return None, None
    path = path.removeprefix("generic_object.").removeprefix("genericObject.")
    module = _MODULE_PATH.match(path)
    if module and isinstance(body, dict):
        modules = (
            body.get("textModulesData")
            if module.group(1) == "textModulesData"
            else (body.get("linksModuleData") or {}).get("uris")
        ) or []
        index = int(module.group(2))
        if index < len(modules):
            key = modules[index].get("id", "")
            return CARD_FIELDS.get(key, key), path
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    return CARD_FIELDS.get(top, top), path


class GoogleRefused(ProviderError):
    """Google refused this installation's service account or its issuer permissions."""


def _google_message(response):
    """Google's own words: error.message of its JSON error body, else the HTTP reason."""
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        # OAuth endpoints answer {"error": "invalid_grant", "error_description": ...}.
        return error
    return response.reason or response.text[:200] or "no details"


def _never_connected(exc):
    """True when requests could not open a connection at all (refused, DNS), as opposed
    to one lost after the request was sent. requests wraps urllib3's errors: a failed
    connect arrives as MaxRetryError(reason=NewConnectionError), a lost one as the
    ProtocolError itself (read errors are not retried, so never wrapped)."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, NewConnectionError)


class GoogleWalletClient:
    """One batch's connection to Google Wallet: one AuthorizedSession, one token.

    Use as a context manager. Construction raises NotConfigured when settings are
    missing or the key cannot be loaded, so the caller can stop the whole batch.
    """

    def __init__(self):
        self._account = conf.load_service_account()
        try:
            self._credentials = _credentials(self._account)
        except ValueError as exc:
            raise NotConfigured(f"Google Wallet service-account key: {exc}") from exc
        self._base_url = conf.base_url()
        self._timeout = conf.timeout()
        self._rate_limit = limits.google_limit()
        self._session = None
        # class id -> hash of the body known to be at Google, for this batch.
        self._known_classes = {}

    def __enter__(self):
        self._open()
        # Fetch the token up front (unless a valid one is cached): a refused key is a
        # provider-wide failure, and raising it here lets the caller stop the batch instead
        # of failing every card with the same reason.
        try:
            with _refresh_lock:
                if not self._credentials.valid:
                    auth_request = functools.partial(GoogleAuthRequest(), timeout=self._timeout)
                    with self._translate_errors("POST", "token"):
                        self._credentials.refresh(auth_request)
        except BaseException:
            # __exit__ does not run when __enter__ raises.
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def _open(self):
        if self._session is None:
            self._session = AuthorizedSession(self._credentials, refresh_timeout=self._timeout)
        return self._session

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None

    def sync_card(self, card, last_hash):
        """Push the card to its Google Wallet object; returns (SYNCED|UNCHANGED, new_hash).

        Idempotent: the object id is derived from the card, so an interrupted sync is
        simply done again. The company's class is brought up to date first, if it
        changed. Raises TransientError or PermanentError.
        """
        self._ensure_class(build_class(card.company))
        object_body = build_object(card)
        new_hash = body_hash(object_body)
        if last_hash and new_hash == last_hash:
            return UNCHANGED, new_hash
        self._upsert("genericObject", object_body)
        return SYNCED, new_hash

    def _ensure_class(self, body):
        """Send the class unless Google has this very body already: one look-up per
        class and batch, a request only when it changed (or was never sent)."""
        class_id, class_hash = body["id"], body_hash(body)
        if self._known_classes.get(class_id) == class_hash:
            return
        if not GoogleWalletClass.objects.filter(
            class_id=class_id, content_hash=class_hash
        ).exists():
            self._upsert("genericClass", body)
            GoogleWalletClass.objects.update_or_create(
                class_id=class_id,
                defaults={"content_hash": class_hash, "updated_at": timezone.now()},
            )
        self._known_classes[class_id] = class_hash

    def _upsert(self, resource, body):
        """PATCH the resource, or insert it when Google does not know it yet."""
        # PATCH first: after the first sync everything exists, so this is one request.
        path = f"{resource}/{quote(body['id'], safe='')}"
        response = self._request("PATCH", path, json=body)
        if response.status_code != 404:
            self._raise_for_status(response, f"patch {resource}", body)
            return
        response = self._request("POST", resource, json=_without_nulls(body))
        if response.status_code == 409:
            # Inserted by someone else between our PATCH and POST; our data must still win.
            response = self._request("PATCH", path, json=body)
            self._raise_for_status(response, f"patch {resource}", body)
            return
        self._raise_for_status(response, f"insert {resource}", body)

    def expire_object(self, object_id):
        """Set a deleted card's object to EXPIRED (Google moves it to the holder's expired
        passes). An object that no longer exists has nothing left to expire."""
        path = f"genericObject/{quote(object_id, safe='')}"
        response = self._request("PATCH", path, json={"id": object_id, "state": "EXPIRED"})
        if response.status_code != 404:
            self._raise_for_status(response, "expire genericObject")

    def _request(self, method, path, json=None):
        if self._rate_limit is not None:
            self._rate_limit.acquire()
        url = f"{self._base_url}/{path}"
        with self._translate_errors(method, path):
            return self._open().request(method, url, json=json, timeout=self._timeout)

    @contextlib.contextmanager
    def _translate_errors(self, method, path):
        """Network and token failures as TransientError / PermanentError."""
        try:
            yield
        except requests.ConnectTimeout as exc:
            raise Unreachable(
                f"Cannot reach Google Wallet ({method} {path}): no connection within "
                f"GOOGLE_WALLET_TIMEOUT = {self._timeout:g} s."
            ) from exc
        except requests.Timeout as exc:
            # The request may have been applied; PATCH and PUT are safe to send again.
            raise TransientError(
                f"Google Wallet did not answer within GOOGLE_WALLET_TIMEOUT = "
                f"{self._timeout:g} s ({method} {path})."
            ) from exc
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise Unreachable(f"Cannot reach Google Wallet ({method} {path}).") from exc
            raise TransientError(
                f"Connection to Google Wallet lost before it answered ({method} {path})."
            ) from exc
        except auth_exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise TransientError(f"Google refused the service-account token: {exc}") from exc
            # google-auth's args are (its message, Google's answer): the message is enough.
            words = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            raise GoogleRefused(
                f"Google refused the service-account key ({words}): {KEY_REFUSED_HINT}."
            ) from exc
        except auth_exceptions.TransportError as exc:
            raise TransientError(f"Cannot reach Google's token endpoint: {exc}") from exc

    def _raise_for_status(self, response, action, body=None):
        status = response.status_code
        if status < 400:
            return
        message = _google_message(response)
        if status == 400 and body is not None and body.get("classId"):
            # The card's own data: say which field, so a person can correct it.
            field, path = refused_field(response, body)
            if field:
                raise PermanentError(
                    f"Google Wallet refused the card's {field} ({path}): HTTP 400: {message}"
                )
        if status == 401:
            # AuthorizedSession fetched a new token and sent the request again already.
            raise GoogleRefused(
                f"Google Wallet refused the credentials (HTTP 401, also with a new token: "
                f"{message}): {UNAUTHORIZED_HINT}."
            )
        if status == 403:
            # PERMISSION_DENIED: the service account may not act for the issuer.
            raise GoogleRefused(
                f"Google Wallet denied permission (HTTP 403: {message}): {PERMISSION_HINT}."
            )
        reason = f"Google Wallet {action}: HTTP {status}: {message}"
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=timezone.now())
            raise TransientError(reason, retry_after=retry_after)
        raise PermanentError(reason)
