"""APNs client for Wallet pass updates: an empty push over HTTP/2 tells a device to ask
the PassKit web service what changed.

One HTTP/2 connection serves a whole run: `shared_client()` keeps one client per settings
combination at module level and closes it at process exit. Several batches use it at
once (the engine serves several companies in threads), and httpcore's *sync* HTTP/2
connection is not safe for that: it allocates stream ids, encodes headers and queues
frames outside its locks, so two threads can interleave them on the wire (httpcore
1.0.9; see pydantic/httpx2#1153). The client therefore runs httpx's *async* client on
one event-loop thread of its own; every thread's push is a coroutine handed to that
loop, where the streams multiplex over the one connection without racing. Whatever
touches the database (the provider token, registrations) stays in the caller's thread.

Token auth sends the ES256 provider token that wallet/apple/apns_token.py keeps shared
in the database. Certificate auth presents the Pass Type ID certificate, as Apple's
Wallet documentation describes. Each push first takes a token from the shared
`APNS_RATE_LIMIT` bucket, if one is set (wallet/limits.py).

What an answer means (Apple's "Handling notification responses from APNs"): 200 sent;
410 Unregistered; 400 BadDeviceToken: the token is unknown *in this environment* (what
wallet/apple/notify.py does with these two); a refused credential, certificate or topic
(PROVIDER_WIDE) raises ApnsRefused, which pauses the batch; 429 and 5xx are transient;
anything else is permanent for that one push.

No answer is transient too: a connection lost after the push was sent, or no answer
within APNS_TIMEOUT (seconds to connect, send and wait, default 10). The push may have
reached the device, but it only tells the device to ask what changed, so pushing again is
harmless. httpcore then drops the broken connection (every push still waiting on it fails
alike and is retried) and the next push opens a new one. No connection at all
(ApnsUnreachable) pauses the batch instead, as every push would fail alike.
"""

import asyncio
import atexit
import enum
import json
import os
import socket
import ssl
import tempfile
import threading

import httpx
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from bulkjobs.decisions import parse_retry_after
from wallet import limits
from wallet.errors import PermanentError, ProviderError, TransientError, Unreachable

from . import apns_conf, conf
from .apns_token import ProviderToken

# A 400 with these reasons: the device token is unknown to the environment we talk to.
BAD_TOKEN_REASONS = {"BadDeviceToken", "DeviceTokenNotForTopic"}
PROVIDER_TOKEN_REASONS = {"ExpiredProviderToken", "InvalidProviderToken"}
_CREDENTIALS_HINT = (
    "check that APNS_KEY_FILE is the .p8 key named by APNS_KEY_ID, that APPLE_TEAM_ID is "
    "the key's team, and that the key has the Apple Push Notifications service enabled"
)
_TOPIC_HINT = (
    "check APPLE_PASS_TYPE_ID (a pass's push topic is its pass type id) and that the key "
    "or certificate belongs to the same team"
)
# Answers every push would get alike, and what to fix for each.
PROVIDER_WIDE = {
    "InvalidProviderToken": _CREDENTIALS_HINT,
    "ExpiredProviderToken": "check this server's clock (NTP); tokens are dated by it",
    "MissingProviderToken": "set APNS_KEY_FILE and APNS_KEY_ID, or check that the pass "
    "certificate (APPLE_PASS_CERT / APPLE_PASS_P12) is a Pass Type ID certificate",
    "BadCertificate": "check the pass certificate (APPLE_PASS_CERT / APPLE_PASS_P12), or "
    "use token auth (APNS_KEY_FILE, APNS_KEY_ID)",
    "BadCertificateEnvironment": "the certificate is for the other APNs environment; "
    f"check APNS_BASE_URL (production: {apns_conf.PRODUCTION_URL})",
    "Forbidden": "check the APNs key's or certificate's permissions",
    "BadTopic": _TOPIC_HINT,
    "TopicDisallowed": _TOPIC_HINT,
    "MissingTopic": _TOPIC_HINT,
    "TooManyProviderTokenUpdates": "APNs saw new provider tokens too often; is another "
    "installation using the same APNS_KEY_ID? This one renews at most every 20 minutes",
}


#: TLS alerts (OpenSSL's names) a server sends when it refuses the client certificate
#: we presented: with certificate auth, APNs refusing the pass certificate. With TLS 1.3
#: the refusal comes after the handshake, on the first read or write, so httpx reports it
#: as a ReadError or WriteError that would otherwise pass for a network blip.
CERTIFICATE_ALERTS = (
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_CERTIFICATE_REVOKED",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_UNKNOWN_CA",
    "ALERT_UNSUPPORTED_CERTIFICATE",
    "ALERT_ACCESS_DENIED",
)
CERTIFICATE_HINT = (
    "check APPLE_PASS_CERT and APPLE_PASS_KEY (or APPLE_PASS_P12): APNs takes only a "
    "current Pass Type ID certificate issued by Apple for APPLE_PASS_TYPE_ID, or use "
    "token auth (APNS_KEY_FILE, APNS_KEY_ID)"
)


#: Seconds a certificate probe waits for APNs to refuse it (see _certificate_refusal).
CERTIFICATE_PROBE_SECONDS = 3.0


def _certificate_alert(exc):
    """The TLS alert in exc's chain by which the server refused our client certificate
    (OpenSSL says "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] ..."), or ""."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{getattr(exc, 'reason', '') or ''} {exc}".upper()
        for alert in CERTIFICATE_ALERTS:
            if alert in text:
                return alert
        exc = exc.__cause__ or exc.__context__
    return ""


class ApnsUnreachable(Unreachable):
    """No connection to APNs at all (DNS, refused, TLS, connect timeout): every push of
    the batch would fail the same way."""


class ApnsRefused(ProviderError):
    """APNs refused our credentials, certificate or topic (see PROVIDER_WIDE)."""


class PushResult(enum.Enum):
    SENT = "sent"
    # The device no longer wants pushes for this pass: delete its registration.
    UNREGISTERED = "unregistered"
    # 400 BadDeviceToken / DeviceTokenNotForTopic: unknown in this APNs environment.
    BAD_TOKEN = "bad token"


def _refused(status, reason, note=""):
    hint = PROVIDER_WIDE.get(reason) or "check the APNs key or certificate settings"
    return ApnsRefused(f"APNs refused the push ({status} {reason}{note}): {hint}.")


class ApnsClient:
    """Sends pass-update pushes from any thread; one HTTP/2 connection for its lifetime.

    The connection lives on the client's own event-loop thread (see the module
    docstring); `push()` blocks its caller until that push is answered.
    """

    def __init__(
        self,
        *,
        base_url,
        topic,
        token=None,
        ssl_context=None,
        timeout=10.0,
        rate_limit=None,
        production=True,
    ):
        self.base_url = base_url
        self.topic = topic
        #: Seconds to connect, to send a push and to wait for its answer (APNS_TIMEOUT).
        self.timeout = timeout
        self.token = token
        self.rate_limit = rate_limit
        #: False for the sandbox (any URL but the production one, unless APNS_ENVIRONMENT
        #: says otherwise): BadDeviceToken there most likely means a production token.
        self.production = production
        self._ssl_context = ssl_context
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

    def _headers(self, bearer):
        headers = {
            "apns-topic": self.topic,
            # Wallet updates are background pushes; APNs requires priority 5 for those.
            "apns-push-type": "background",
            "apns-priority": "5",
        }
        if bearer is not None:
            headers["authorization"] = f"bearer {bearer}"
        return headers

    def push(self, push_token):
        """Push to one device; returns a PushResult, or raises ApnsRefused (provider-wide,
        see PROVIDER_WIDE), ApnsUnreachable, TransientError, PermanentError, or RateLimited
        when the shared APNs bucket has no token for a while.

        Call it from a thread with database access: the provider token is read there.
        """
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        bearer = self.token.get() if self.token is not None else None
        try:
            status, reason, retry_after = self._run(self._send(push_token, bearer))
        except TransientError as exc:
            if bearer is None and getattr(exc, "connection_failed", False):
                alert = self._certificate_refusal()
                if alert:
                    # Every push would be refused alike until the certificate is fixed.
                    raise ApnsRefused(
                        f"APNs refused the pass certificate (TLS {alert}): {CERTIFICATE_HINT}."
                    ) from exc
            raise
        if status == 403 and reason in PROVIDER_TOKEN_REASONS and bearer is not None:
            # Renew once: the shared token may be stale, or was minted with a revoked key.
            fresh = self.token.renew(bearer)
            if fresh is None:
                raise _refused(status, reason, "; the token is under 20 minutes old")
            status, reason, retry_after = self._run(self._send(push_token, fresh))
            if status == 403 and reason in PROVIDER_TOKEN_REASONS:
                raise _refused(status, reason, ", also with a new token")
        return _result(status, reason, retry_after)

    def _certificate_refusal(self):
        """With certificate auth, the TLS alert by which APNs refuses our certificate, or
        "" (accepted, or no answer either way). The connection that failed cannot say: a
        TLS 1.3 server checks the client's certificate after the handshake, and a push
        written meanwhile meets a reset connection (a WriteError, like a network blip)
        that discards the alert. So a fresh handshake is made and only read from, where
        the alert arrives intact."""
        if self._ssl_context is None:
            return ""
        url = httpx.URL(self.base_url)
        try:
            with socket.create_connection(
                (url.host, url.port or 443), timeout=min(self.timeout, CERTIFICATE_PROBE_SECONDS)
            ) as raw:
                with self._ssl_context.wrap_socket(raw, server_hostname=url.host) as tls:
                    tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            return _certificate_alert(exc)
        return ""

    async def _send(self, push_token, bearer):
        """(status, reason, retry_after) of one push; runs on the loop thread only."""
        try:
            response = await self._http.post(
                f"/3/device/{push_token}", content=b"{}", headers=self._headers(bearer)
            )
        except httpx.ConnectTimeout as exc:
            raise ApnsUnreachable(f"APNs unreachable: {_describe(exc)}") from exc
        except httpx.ConnectError as exc:
            raise _connection_failed(
                ApnsUnreachable(f"APNs unreachable: {_describe(exc)}")
            ) from exc
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            # The push may have reached APNs; pushing again is harmless (see the docstring).
            raise TransientError(
                f"APNs did not answer within APNS_TIMEOUT = {self.timeout:g} s."
            ) from exc
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise _connection_failed(
                TransientError(f"APNs connection lost before it answered ({_describe(exc)}).")
            ) from exc
        except httpx.TransportError as exc:
            raise _connection_failed(
                TransientError(f"APNs connection failed: {_describe(exc)}")
            ) from exc
        except ssl.SSLError as exc:
            # A TLS 1.3 alert read while the request is in flight reaches us as the ssl
            # module's own error, not wrapped by httpx: when it refuses our certificate,
            # it says so already; push() asks a fresh handshake otherwise.
            alert = _certificate_alert(exc)
            if alert and bearer is None:
                raise ApnsRefused(
                    f"APNs refused the pass certificate (TLS {alert}): {CERTIFICATE_HINT}."
                ) from exc
            raise _connection_failed(
                TransientError(f"APNs connection failed: {_describe(exc)}")
            ) from exc
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=timezone.now())
        return response.status_code, _reason(response), retry_after


def _connection_failed(error):
    """Mark an error as a connection that broke (not a timeout): with certificate auth,
    possibly APNs refusing the certificate (see ApnsClient._certificate_refusal)."""
    error.connection_failed = True
    return error


def _describe(exc):
    # httpx's timeouts and some of its disconnects have an empty message.
    return str(exc) or type(exc).__name__


def _result(status, reason, retry_after):
    """What an APNs answer means for the push (see the module docstring)."""
    if status == 200:
        return PushResult.SENT
    if status == 410:
        return PushResult.UNREGISTERED
    if status == 400 and reason in BAD_TOKEN_REASONS:
        return PushResult.BAD_TOKEN
    if reason in PROVIDER_WIDE or status == 403:
        raise _refused(status, reason)
    if status == 429 or status >= 500:
        raise TransientError(f"APNs {status} {reason}".strip(), retry_after=retry_after)
    raise PermanentError(f"APNs refused the push: {status} {reason}".strip())


def _reason(response):
    try:
        return str(json.loads(response.content or b"{}").get("reason", ""))
    except (ValueError, AttributeError):
        return ""


# --- the client shared by a run --------------------------------------------------------


def _settings_key():
    names = (
        "APNS_BASE_URL",
        "APNS_ENVIRONMENT",
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
    """A new ApnsClient configured from settings (token auth if APNS_KEY_FILE is set).

    Raises ImproperlyConfigured, saying what to fix, for a key that is not an EC P-256
    PEM key, a malformed key or team id, or an unknown APNS_ENVIRONMENT: the batch then
    pauses, as every push would fail alike (the processing commands skip the system
    checks that report the same).
    """
    context = _ssl_context()
    token = None
    production = apns_conf.environment() == apns_conf.PRODUCTION
    if apns_conf.key_file():
        key_pem = apns_conf.load_token_key(apns_conf.key_file())
        problems = [apns_conf.key_id_problem(), apns_conf.team_id_problem(conf.team_id())]
        if any(problems):
            raise ImproperlyConfigured(" ".join(filter(None, problems)))
        token = ProviderToken(key_pem, apns_conf.key_id(), conf.team_id())
    else:
        _load_client_certificate(context)
    return ApnsClient(
        base_url=apns_conf.base_url(),
        topic=conf.pass_type_id(),
        token=token,
        ssl_context=context,
        timeout=float(getattr(settings, "APNS_TIMEOUT", 10.0)),
        rate_limit=limits.apns_limit(),
        production=production,
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
