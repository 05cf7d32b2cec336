"""A loopback stand-in for Google's OAuth token endpoint and the Wallet REST API.

It is a real HTTP server (ThreadingHTTPServer on 127.0.0.1) so the production client runs
unchanged: google-auth signs a JWT-bearer assertion and posts it to /token, where it is
verified against the test service account's public key; genericClass and genericObject
are kept in memory with Google's insert/get/patch semantics and error shapes. Every body
is checked against the Wallet API's discovery document (discovery.py: unknown fields,
types, enums; a violation is refused with a 400 as Google does and kept in
`schema_violations`), and a URI that is not ASCII (an IRI as typed) is refused with a
400 naming the field in a google.rpc.BadRequest fieldViolation. Tests can
script failures (status, Retry-After, delay) for the next matching requests, or delay
every API answer (`delay`, as a distant server would). Like a real network it also
misbehaves on cue, per object id: `drop_next()` reads a request in full and closes the
connection without answering (after applying it, or not), `slow_next()` serves a request
only after a delay longer than the client will wait.
Used by tests/wallet/test_google_*.py and bench/bench_google.py; not a conftest on purpose.
"""

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.wallet.discovery import RESOURCE_SCHEMAS, violations

API_PREFIX = "/walletobjects/v1/"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always puts Google's real token endpoint in the assertion's aud, whatever
# token_uri the request goes to.
ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"
WALLET_SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
RESOURCE_ID = re.compile(r"^\d+\.[A-Za-z0-9._-]+$")
# The fields of Google's GenericClass resource (REST reference, walletobjects v1): Google
# refuses any other name with 400 "Unknown name", issuerName or hexBackgroundColor too.
GENERIC_CLASS_FIELDS = {
    "id", "classTemplateInfo", "imageModulesData", "textModulesData", "linksModuleData",
    "enableSmartTap", "redemptionIssuers", "securityAnimation",
    "multipleDevicesAndHoldersAllowedStatus", "callbackOptions", "viewUnlockRequirement",
    "messages", "appLinkData", "valueAddedModuleData", "merchantLocations",
}  # fmt: skip
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def make_service_account(tmp_path, email="wallet-sync@test-project.iam.gserviceaccount.com"):
    """Generate an RSA 2048 service-account key; returns (info, key file path, public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        # Deliberately Google's real URI: tests must reach loopback only through the
        # GOOGLE_WALLET_TOKEN_URI override, as production config would.
        "token_uri": ASSERTION_AUDIENCE,
    }
    path = tmp_path / "google-wallet-key.json"
    path.write_text(json.dumps(info))
    return info, path, key.public_key()


def google_error(status, message, reason="invalid"):
    """An error body shaped like Google's JSON APIs return it."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }


#: A scripted status: close the connection without answering.
DROP = "drop"
#: A scripted status: serve the request as usual (after the scripted delay).
SERVE = "serve"


@dataclass
class Scripted:
    method: str
    resource: str
    status: int | str
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    #: Only requests for this object or class id match (None: any id).
    resource_id: str | None = None
    #: For DROP: apply the request before dropping (the answer is what gets lost).
    apply: bool = False

    def matches(self, method, resource, resource_id):
        return (
            self.method == method
            and self.resource == resource
            and self.resource_id in (None, resource_id)
        )


class FakeGoogleWallet:
    """Token endpoint + walletobjects API with in-memory state. Use as a context manager."""

    def __init__(self, public_key, client_email):
        self.public_key = public_key
        self.client_email = client_email
        self.classes = {}
        self.objects = {}
        self.requests = []  # (method, path, json body or None) of API calls, in order
        self.request_times = []  # time.monotonic() at each API call's arrival, in order
        # Seconds every API call waits before it is served.
        self.delay = 0.0
        # Called as on_api_call(method, path) in the server's thread before serving, to
        # act meanwhile like another process would (e.g. an operator cancelling a job).
        self.on_api_call = None
        self.token_requests = 0
        self.token_errors = []
        #: What the discovery document found wrong in the bodies sent ("path: problem").
        self.schema_violations = []
        self._tokens = set()
        self._script = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_uri(self):
        return self.url + "/token"

    @property
    def base_url(self):
        return self.url + API_PREFIX.rstrip("/")

    def fail_next(self, method, resource, status, message=None, headers=None, delay=0.0, times=1):
        """Answer the next `times` matching requests with `status` instead of serving them."""
        body = google_error(status, message or f"Scripted {status}") if status >= 400 else {}
        with self._lock:
            for _ in range(times):
                self._script.append(
                    Scripted(method, resource, status, body, dict(headers or {}), delay)
                )

    def drop_next(self, method, resource, resource_id=None, applied=False, times=1):
        """Read the next `times` matching requests in full, then close the connection
        without answering; with `applied`, serve them first (the answer is lost, not the
        request)."""
        with self._lock:
            for _ in range(times):
                self._script.append(
                    Scripted(method, resource, DROP, resource_id=resource_id, apply=applied)
                )

    def slow_next(self, method, resource, delay, resource_id=None):
        """Serve the next matching request as usual, but only after `delay` seconds."""
        with self._lock:
            self._script.append(
                Scripted(method, resource, SERVE, delay=delay, resource_id=resource_id)
            )

    def calls(self, method=None, resource=None):
        """The recorded API calls as (method, path) pairs, optionally filtered."""
        return [
            (m, p)
            for m, p, _ in self.requests
            if (method is None or m == method) and (resource is None or p.startswith(resource))
        ]

    # --- request handling (runs on server threads) ---

    def _token(self, handler, raw):
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self._lock:
            self.token_requests += 1
        try:
            if form.get("grant_type") != JWT_BEARER:
                raise jwt.InvalidTokenError(f"unsupported grant_type {form.get('grant_type')!r}")
            claims = jwt.decode(
                form.get("assertion", ""),
                self.public_key,
                algorithms=["RS256"],
                audience=ASSERTION_AUDIENCE,
            )
            if claims.get("iss") != self.client_email:
                raise jwt.InvalidTokenError(f"unknown issuer {claims.get('iss')!r}")
            if WALLET_SCOPE not in claims.get("scope", "").split():
                raise jwt.InvalidTokenError(f"scope {claims.get('scope')!r} lacks Wallet")
        except jwt.InvalidTokenError as exc:
            with self._lock:
                self.token_errors.append(str(exc))
            return 400, {"error": "invalid_grant", "error_description": str(exc)}, {}
        token = "ya29.test-" + secrets.token_urlsafe(16)
        with self._lock:
            self._tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}, {}

    def _api(self, handler, method, raw):
        path = unquote(handler.path.split("?")[0][len(API_PREFIX) :])
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append((method, path, body))
            self.request_times.append(time.monotonic())
        time.sleep(self.delay)
        if self.on_api_call is not None:
            from django.db import connections

            try:
                self.on_api_call(method, path)
            finally:
                connections.close_all()  # this thread's own database connection
        auth = handler.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
            return 401, google_error(401, "Request had invalid authentication credentials."), {}
        resource, _, resource_id = path.partition("/")
        # An insert names its id in the body.
        target = resource_id or (body.get("id") if isinstance(body, dict) else None)
        with self._lock:
            for index, scripted in enumerate(self._script):
                if scripted.matches(method, resource, target):
                    del self._script[index]
                    break
            else:
                scripted = None
        if scripted is not None:
            time.sleep(scripted.delay)
            if scripted.status == DROP:
                if scripted.apply:
                    self._serve_resource(resource, method, resource_id, body)
                return DROP, None, {}
            if scripted.status != SERVE:
                return scripted.status, scripted.body, scripted.headers
        return self._serve_resource(resource, method, resource_id, body)

    def _serve_resource(self, resource, method, resource_id, body):
        store = {"genericClass": self.classes, "genericObject": self.objects}.get(resource)
        if store is None:
            return 404, google_error(404, f"Unknown resource {resource}", "notFound"), {}
        with self._lock:
            return self._serve(store, resource, method, resource_id, body)

    def _serve(self, store, resource, method, resource_id, body):
        if method == "GET":
            if resource_id not in store:
                return 404, google_error(404, f"Resource {resource_id} not found", "notFound"), {}
            return 200, store[resource_id], {}
        if method == "POST":
            problem = self._invalid(resource, body, inserting=True)
            if problem:
                return problem
            if body["id"] in store:
                message = f"Resource {body['id']} already exists"
                return 409, google_error(409, message, "duplicate"), {}
            store[body["id"]] = body
            return 200, body, {}
        if method == "PATCH":
            if resource_id not in store:
                return 404, google_error(404, f"Resource {resource_id} not found", "notFound"), {}
            problem = self._invalid(resource, body, inserting=False)
            if problem:
                return problem
            merged = dict(store[resource_id])
            for key, value in body.items():
                # Patch semantics: absent keys stay, null clears.
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            store[resource_id] = merged
            return 200, merged, {}
        return 405, google_error(405, f"{method} not allowed"), {}

    def _invalid(self, resource, body, inserting):
        if not isinstance(body, dict) or not RESOURCE_ID.match(str(body.get("id", ""))):
            return 400, google_error(400, "Invalid resource ID"), {}
        found = violations(body, RESOURCE_SCHEMAS[resource]) if resource in RESOURCE_SCHEMAS else []
        if found:
            with self._lock:
                self.schema_violations.extend(found)
            return 400, google_error(400, f"Invalid JSON payload received. {found[0]}"), {}
        for path, uri in _uris(body):
            if not uri.isascii() or any(c.isspace() for c in uri):
                error = google_error(400, f"Invalid value for field '{path}': not a URI")
                error["error"]["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": path, "description": "Invalid URI"}],
                    }
                ]
                return 400, error, {}
        if resource == "genericObject":
            if inserting and any(value is None for value in body.values()):
                return 400, google_error(400, "Invalid JSON payload: null value on insert"), {}
            for required in ("classId", "cardTitle", "header"):
                if inserting and not body.get(required):
                    return 400, google_error(400, f"Missing required field: {required}"), {}
            if body.get("classId") and body["classId"] not in self.classes:
                return 404, google_error(404, "Issuer class not found", "classNotFound"), {}
        return None


def _uris(value, path=""):
    """(field path, value) of every "uri" in a body, e.g. ("linksModuleData.uris[2].uri", ...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else key
            if key == "uri" and isinstance(item, str):
                yield inner, item
            else:
                yield from _uris(item, inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _uris(item, f"{path}[{index}]")


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as Google serves it; the client's session reuses one connection.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle plus delayed ACK
    # adds ~40 ms to every response.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def _handle(self):
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.command == "POST" and self.path == "/token":
            status, body, headers = fake._token(self, raw)
        elif self.path.startswith(API_PREFIX):
            status, body, headers = fake._api(self, self.command, raw)
        else:
            status, body, headers = 404, google_error(404, "Not found"), {}
        if status == DROP:
            # The request was read in full; the client gets no answer, only the close.
            self.close_connection = True
            return
        payload = json.dumps(body).encode() if body is not None else b""
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout tests); nothing left to tell it.
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


ISSUER_ID = "3388000000012345678"


def google_settings(fake, key_path, issuer_id=ISSUER_ID):
    """The Google Wallet settings for `fake`, by name (for override_settings too)."""
    return {
        "GOOGLE_WALLET_ISSUER_ID": issuer_id,
        "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE": str(key_path),
        "GOOGLE_WALLET_SERVICE_ACCOUNT_JSON": "",
        "GOOGLE_WALLET_BASE_URL": fake.base_url,
        "GOOGLE_WALLET_TOKEN_URI": fake.token_uri,
        "GOOGLE_WALLET_TIMEOUT": 5.0,
        "GOOGLE_WALLET_ORIGINS": ["https://cards.example.com"],
        "GOOGLE_WALLET_LOGO_URL": "https://cards.example.com/static/wallet/logo.png",
    }


def point_settings_at(settings, fake, key_path, issuer_id=ISSUER_ID):
    """Configure Google Wallet settings (a pytest-django `settings`) for `fake`."""
    for name, value in google_settings(fake, key_path, issuer_id).items():
        setattr(settings, name, value)
