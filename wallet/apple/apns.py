"""APNs client for Wallet pass updates: an empty push over HTTP/2 tells a device to ask
the PassKit web service what changed.

One HTTP/2 connection serves a whole run: `shared_client()` keeps one client per settings
combination at module level and closes it at process exit. Several batches use it at
once (the engine serves several companies in threads), and httpcore's *sync* HTTP/2
connection is not safe for that: it allocates stream ids, encodes headers and queues
frames outside its locks, so two threads can interleave them on the wire (httpcore
1.0.9; see pydantic/httpx2#1153). The client therefore runs httpx's *async* client on
one event-loop thread of its own; every thread's push is a coroutine handed to that
loop, where the streams multiplex over the one connection without racing.

Token auth signs an ES256 provider token with pyjwt and reuses it for 30 minutes
(Apple: refresh no more often than every 20 minutes, no less often than every 60);
certificate auth presents the Pass Type ID certificate, as Apple's Wallet documentation
describes. Each push first takes a token from the shared `APNS_RATE_LIMIT` bucket, if
one is set (wallet/limits.py).
"""

import asyncio
import atexit
import enum
import json
import os
import ssl
import tempfile
import threading
import time

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from wallet import limits
from wallet.errors import PermanentError, TransientError

from . import conf

TOKEN_LIFETIME_SECONDS = 30 * 60
# A 400 with these reasons means the token will never work for this topic again.
DEAD_TOKEN_REASONS = {"BadDeviceToken", "DeviceTokenNotForTopic"}
PROVIDER_TOKEN_REASONS = {"ExpiredProviderToken", "InvalidProviderToken"}


class ApnsUnreachable(TransientError):
    """No connection to APNs at all (DNS, refused, TLS, connect timeout): every push of
    the batch would fail the same way."""


class PushResult(enum.Enum):
    SENT = "sent"
    # The device no longer wants pushes for this pass: delete its registration.
    UNREGISTERED = "unregistered"


class ProviderToken:
    """An ES256 JWT for APNs, minted once and reused until it is 30 minutes old."""

    def __init__(self, key_pem, key_id, team_id):
        self.key_pem = key_pem
        self.key_id = key_id
        self.team_id = team_id
        self._token = None
        self._issued_at = 0.0
        self.minted = 0

    def get(self):
        if self._token is None or time.time() - self._issued_at >= TOKEN_LIFETIME_SECONDS:
            self.renew()
        return self._token

    def renew(self):
        self._issued_at = time.time()
        self._token = jwt.encode(
            {"iss": self.team_id, "iat": int(self._issued_at)},
            self.key_pem,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
        self.minted += 1
        return self._token


class ApnsClient:
    """Sends pass-update pushes from any thread; one HTTP/2 connection for its lifetime.

    The connection lives on the client's own event-loop thread (see the module
    docstring); `push()` blocks its caller until that push is answered.
    """

    def __init__(
        self, *, base_url, topic, token=None, ssl_context=None, timeout=10.0, rate_limit=None
    ):
        self.topic = topic
        self.token = token
        self.rate_limit = rate_limit
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="apns-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._http = self._run(
            self._open(base_url, ssl_context if ssl_context is not None else True, timeout)
        )

    @staticmethod
    async def _open(base_url, verify, timeout):
        # Created on the loop: the async client's locks belong to the loop that uses them.
        return httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            http2=True,
            verify=verify,
            timeout=timeout,
            # HTTP/2 multiplexes, so one connection is all we need; never let it expire
            # while idle between batches of a run (httpx's default is 5 seconds).
            limits=httpx.Limits(max_connections=1, keepalive_expiry=None),
        )

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._run(self._http.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _headers(self):
        headers = {
            "apns-topic": self.topic,
            # Wallet updates are background pushes; APNs requires priority 5 for those.
            "apns-push-type": "background",
            "apns-priority": "5",
        }
        if self.token is not None:
            headers["authorization"] = f"bearer {self.token.get()}"
        return headers

    def push(self, push_token):
        """Push to one device; returns PushResult, raises TransientError / PermanentError,
        or RateLimited when the shared APNs bucket has no token for a while."""
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        return self._run(self._push(push_token))

    async def _push(self, push_token):
        # Runs on the loop thread only, so the provider token is never renewed twice at once.
        renewed = False
        while True:
            try:
                response = await self._http.post(
                    f"/3/device/{push_token}", content=b"{}", headers=self._headers()
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise ApnsUnreachable(f"APNs unreachable: {exc or type(exc).__name__}") from exc
            except httpx.TransportError as exc:
                raise TransientError(
                    f"APNs connection failed: {exc or type(exc).__name__}"
                ) from exc
            if response.status_code == 200:
                return PushResult.SENT
            reason = _reason(response)
            status = response.status_code
            if status == 410:
                return PushResult.UNREGISTERED
            if status == 400 and reason in DEAD_TOKEN_REASONS:
                return PushResult.UNREGISTERED
            if status == 403 and reason in PROVIDER_TOKEN_REASONS and self.token and not renewed:
                # Renew once: the cached token may have been revoked or our clock was off.
                self.token.renew()
                renewed = True
                continue
            if status == 429 or status >= 500:
                raise TransientError(
                    f"APNs {status} {reason}".strip(), retry_after=_retry_after(response)
                )
            raise PermanentError(f"APNs refused the push: {status} {reason}".strip())


def _reason(response):
    try:
        return str(json.loads(response.content or b"{}").get("reason", ""))
    except (ValueError, AttributeError):
        return ""


def _retry_after(response):
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


# --- the client shared by a run --------------------------------------------------------


def _settings_key():
    names = (
        "APNS_BASE_URL",
        "APNS_KEY_FILE",
        "APNS_KEY_ID",
        "APNS_CA_FILE",
        "APNS_TIMEOUT",
        "APNS_RATE_LIMIT",
        "APPLE_PASS_TYPE_ID",
        "APPLE_TEAM_ID",
        "APPLE_PASS_CERT",
        "APPLE_PASS_KEY",
        "APPLE_PASS_P12",
    )
    return tuple(str(getattr(settings, name, "")) for name in names)


def _ssl_context():
    ca_file = getattr(settings, "APNS_CA_FILE", "")
    context = ssl.create_default_context(cafile=ca_file or None)
    return context


def _read_key(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ImproperlyConfigured(f"APNS_KEY_FILE: cannot read {path!r}: {exc.strerror}.") from exc


def _load_client_certificate(context):
    """Certificate auth: present the Pass Type ID certificate and key to APNs."""
    material = conf.signing_material()
    # ssl can only load a client certificate from files; write a private temporary copy
    # (the key may come from a PKCS#12 file or be password-protected).
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                material.private_key.private_bytes(
                    Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
                )
            )
            handle.write(material.certificate.public_bytes(Encoding.PEM))
        context.load_cert_chain(path)


def client_from_settings():
    """A new ApnsClient configured from settings (token auth if APNS_KEY_FILE is set)."""
    context = _ssl_context()
    token = None
    key_file = getattr(settings, "APNS_KEY_FILE", "")
    if key_file:
        key_id = getattr(settings, "APNS_KEY_ID", "")
        if not key_id:
            raise ImproperlyConfigured("APNS_KEY_FILE is set but APNS_KEY_ID is empty.")
        token = ProviderToken(_read_key(key_file), key_id, conf.team_id())
    else:
        _load_client_certificate(context)
    return ApnsClient(
        base_url=settings.APNS_BASE_URL,
        topic=conf.pass_type_id(),
        token=token,
        ssl_context=context,
        timeout=float(getattr(settings, "APNS_TIMEOUT", 10.0)),
        rate_limit=limits.apns_limit(),
    )


_lock = threading.Lock()
_shared = {"key": None, "client": None}


def shared_client():
    """The run's APNs client: created on first use, reused by every batch of the process."""
    key = _settings_key()
    with _lock:
        if _shared["key"] != key or _shared["client"] is None:
            if _shared["client"] is not None:
                _shared["client"].close()
            _shared["client"] = client_from_settings()
            _shared["key"] = key
        return _shared["client"]


def close_shared_client():
    with _lock:
        if _shared["client"] is not None:
            _shared["client"].close()
        _shared["client"] = None
        _shared["key"] = None


atexit.register(close_shared_client)
