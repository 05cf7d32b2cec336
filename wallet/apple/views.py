"""The PassKit web service devices call, and the public "Add to Apple Wallet" download.

Endpoints (Apple "Wallet Web Service Reference"), under APPLE_WEB_SERVICE_URL:
  POST/DELETE v1/devices/<device>/registrations/<pass type>/<serial>  (register/unregister)
  GET         v1/devices/<device>/registrations/<pass type>?passesUpdatedSince=<tag>
  GET         v1/passes/<pass type>/<serial>                            (latest pass)
  POST        v1/log
Authenticated calls carry `Authorization: ApplePass <authenticationToken>`. The pass
endpoint and the download serve the pass stored for the card's current version
(wallet/apple/store.py), with the version as ETag. An unknown serial answers exactly
like a wrong token (401), so serials cannot be probed; an unknown pass type answers 404.

The token is not a secret from the public: it is in every pass, and a card's pass is a
public download (its "Add to Apple Wallet" link), like the card page. Whoever has it can
register devices for that pass and fetch its latest version, which is what the public
download gives anyway. So these endpoints bound what any caller can make us store, push
or log: push tokens must look like push tokens, a pass has at most
APPLE_MAX_DEVICES_PER_PASS devices, bodies are small (413 beyond), malformed ones get
400 and never 500, and the unauthenticated log endpoint has a per-client rate and writes
one escaped line per entry. What a caller can still do is fill a pass's device slots so
that new devices get no updates for it (the operators see the devices per pass in the
admin and can delete them there); per-download tokens would close that and are left to
the redesign of pass storage.
"""

import hmac
import json
import logging
import re

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.http import http_date
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cards.models import BusinessCard
from config import throttle
from wallet.errors import NotConfigured
from wallet.models import AppleDeviceRegistration, AppleLogWindow, CardWalletState

from . import conf, pkpass, store

log = logging.getLogger("wallet.apple.passkit")

#: Registration bodies are {"pushToken": "<64 hex characters>"}: a few dozen bytes.
MAX_REGISTRATION_BODY = 4 * 1024
#: APNs device tokens are 64 hexadecimal characters today; Apple says not to rely on
#: the length, so longer ones are accepted, up to a bound that stops abuse.
PUSH_TOKEN = re.compile(r"[0-9a-fA-F]{1,200}")
#: The device_library_id column's size; Apple's identifiers are far shorter.
MAX_DEVICE_ID = 255
#: The log endpoint: bytes per request, entries per request, characters per entry.
MAX_LOG_BODY = 16 * 1024
MAX_LOG_ENTRIES = 50
MAX_LOG_ENTRY = 1000


def _refuse(status, message):
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class BadBody(Exception):
    """A request body we refuse; `response` says why (413 too large, 400 malformed)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.response = _refuse(status, message)


def _json_body(request, limit):
    """The request's body parsed as JSON; BadBody when over `limit` bytes or not JSON."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # Django then reads no body at all
    # Refused before reading: a client announcing megabytes costs us nothing.
    if length > limit:
        raise BadBody(413, f"The body is over {limit} bytes.")
    try:
        return json.loads(request.body or b"{}")
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON and bad UTF-8; RecursionError deeply nested arrays.
        raise BadBody(400, "The body must be JSON.") from exc


def escape_for_log(text, limit=MAX_LOG_ENTRY):
    """`text` as one log line: backslashes and unprintable characters (newlines, other
    control and format characters, line separators) escaped the way repr() does, so an
    entry can neither start a forged log line nor hide text; cut at `limit` characters."""
    escaped = "".join(
        char if char.isprintable() and char != "\\" else repr(char)[1:-1] for char in text
    )
    if len(escaped) > limit:
        return f"{escaped[:limit]}... ({len(escaped) - limit} more characters)"
    return escaped


def _check_pass_type(pass_type_id):
    # Not configured, or another pass type: nothing of ours lives here.
    if not conf.is_configured() or pass_type_id != conf.pass_type_id():
        raise Http404("Unknown pass type.")


def _token(request):
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme == "ApplePass" else ""


def _authorized_state(request, pass_type_id, serial):
    """The pass's state if the request carries its token, else None (unknown serial too)."""
    _check_pass_type(pass_type_id)
    token = _token(request)
    state = (
        CardWalletState.objects.filter(apple_serial_number=serial).defer("apple_pass_data").first()
    )
    expected = state.apple_auth_token if state is not None else "x" * 43
    # Compare even for an unknown serial, so timing does not tell the two apart.
    if not hmac.compare_digest(token.encode(), expected.encode()) or state is None:
        return None
    return state


def _unauthorized():
    return HttpResponse(status=401)


# Devices call these endpoints with no session or CSRF token (they authenticate with the
# pass's ApplePass token), so CSRF protection cannot apply.
@csrf_exempt
@require_http_methods(["POST", "DELETE"])
def registration(request, device_id, pass_type_id, serial):
    # Counted before the token is checked: register/unregister churn and token guessing
    # both cost rows and queries (APPLE_REGISTRATION_RATE_LIMIT per address).
    if not throttle.allow(
        request, "apple-registration", throttle.rate_of("APPLE_REGISTRATION_RATE_LIMIT", "60/min")
    ):
        return throttle.too_many()
    state = _authorized_state(request, pass_type_id, serial)
    if state is None:
        return _unauthorized()
    if len(device_id) > MAX_DEVICE_ID:
        return _refuse(400, f"The device id is over {MAX_DEVICE_ID} characters.")
    if request.method == "DELETE":
        AppleDeviceRegistration.objects.filter(device_library_id=device_id, state=state).delete()
        return HttpResponse(status=200)
    try:
        body = _json_body(request, MAX_REGISTRATION_BODY)
    except BadBody as exc:
        return exc.response
    push_token = body.get("pushToken") if isinstance(body, dict) else None
    if not isinstance(push_token, str) or not PUSH_TOKEN.fullmatch(push_token):
        return _refuse(
            400,
            'The body must be {"pushToken": "..."} with a push token of 1 to 200 '
            "hexadecimal characters.",
        )
    return _register(state, device_id, push_token)


def _register(state, device_id, push_token):
    """Register the device for the pass (201), update its push token (200), or refuse a
    new device when the pass already has APPLE_MAX_DEVICES_PER_PASS of them."""
    with transaction.atomic():
        # Lock the pass's row so two new devices cannot both take the last slot
        # (PostgreSQL, MariaDB; SQLite's IMMEDIATE transactions serialise all writers).
        CardWalletState.objects.select_for_update().filter(pk=state.pk).values_list("pk").get()
        registrations = AppleDeviceRegistration.objects.filter(state=state)
        if registrations.filter(device_library_id=device_id).update(push_token=push_token):
            return HttpResponse(status=200)
        if registrations.count() >= settings.APPLE_MAX_DEVICES_PER_PASS:
            # 429, not 400: the request is well formed and would succeed for a pass with
            # fewer devices; it is refused for how many there are, and it may succeed
            # later, since a device that removes the pass unregisters. A 400 would send
            # whoever reads the device's log looking for a malformed request.
            return _refuse(
                429,
                "This pass has the most devices registered for updates that it may have; "
                "remove it from a device you no longer use, then add it again.",
            )
        AppleDeviceRegistration.objects.create(
            device_library_id=device_id, state=state, push_token=push_token
        )
    return HttpResponse(status=201)


@csrf_exempt
@require_GET
def serials_for_device(request, device_id, pass_type_id):
    _check_pass_type(pass_type_id)
    states = CardWalletState.objects.filter(registrations__device_library_id=device_id)
    since = request.GET.get("passesUpdatedSince", "").strip()
    if since:
        try:
            states = states.filter(apple_update_tag__gt=int(since))
        except ValueError:
            return _refuse(400, "passesUpdatedSince must be a tag we sent.")
    rows = list(states.values_list("apple_serial_number", "apple_update_tag").distinct())
    if not rows:
        return HttpResponse(status=204)
    # A string: devices ignore an integer lastUpdated.
    return JsonResponse(
        {
            "serialNumbers": sorted(serial for serial, _tag in rows),
            "lastUpdated": str(max(tag for _serial, tag in rows)),
        }
    )


@csrf_exempt
@require_GET
def latest_pass(request, pass_type_id, serial):
    """The pass's current version (store.current_pass), or 304 when the device has it.

    A deleted card's state keeps its voided pass, which is served as stored: the device
    learns the card is gone instead of getting 401 for a pass it holds."""
    state = _authorized_state(request, pass_type_id, serial)
    if state is None:
        return _unauthorized()
    state = CardWalletState.objects.select_related("card__company").get(pk=state.pk)
    if state.card is not None:
        store.current_pass(state, state.card)
    elif not state.apple_pass_data:
        return _unauthorized()
    if store.not_modified(request, state):
        response = HttpResponse(status=304)
        response["ETag"] = state.etag
        return response
    return _pkpass_response(state)


@csrf_exempt
@require_POST
def device_log(request):
    """Devices report web service errors here. No authentication (Apple sends none), so
    each client may post APPLE_LOG_REQUESTS_PER_MINUTE requests a minute (429 beyond,
    nothing logged), and each entry becomes one escaped, bounded log line."""
    if not AppleLogWindow.objects.take(
        throttle.client_key(request), settings.APPLE_LOG_REQUESTS_PER_MINUTE
    ):
        return _refuse(429, "Too many log requests; try again in a minute.")
    try:
        body = _json_body(request, MAX_LOG_BODY)
    except BadBody as exc:
        return exc.response
    entries = body.get("logs") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        return _refuse(400, 'The body must be {"logs": ["message", ...]}.')
    if len(entries) > MAX_LOG_ENTRIES:
        return _refuse(413, f"At most {MAX_LOG_ENTRIES} log entries per request.")
    for entry in entries:
        log.warning("Device log: %s", escape_for_log(entry))
    return HttpResponse(status=200)


# --- the public download -----------------------------------------------------------------


def pass_download(request, public_id):
    """The card's current pass for "Add to Apple Wallet" (public, like the card page):
    the stored version, stored first if the card changed since (store.current_pass)."""
    if not conf.is_configured():
        raise Http404("Apple Wallet is not configured.")
    card = get_object_or_404(BusinessCard.objects.select_related("company"), public_id=public_id)
    state = CardWalletState.objects.for_card(card)
    try:
        store.current_pass(state, card)
    except NotConfigured as exc:
        raise Http404("Apple Wallet is not configured.") from exc
    response = _pkpass_response(state)
    filename = f"{slugify(card.full_name) or 'card'}.pkpass"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _pkpass_response(state):
    response = HttpResponse(bytes(state.apple_pass_data), content_type=pkpass.MIME_TYPE)
    response["Last-Modified"] = http_date(int(state.apple_updated_at.timestamp()))
    response["ETag"] = state.etag
    response["Cache-Control"] = "no-cache"
    return response
