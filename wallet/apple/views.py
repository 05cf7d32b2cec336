"""The PassKit web service devices call, and the public "Add to Apple Wallet" download.

Endpoints (Apple "Wallet Web Service Reference"), under APPLE_WEB_SERVICE_URL:
  POST/DELETE v1/devices/<device>/registrations/<pass type>/<serial>  (register/unregister)
  GET         v1/devices/<device>/registrations/<pass type>?passesUpdatedSince=<tag>
  GET         v1/passes/<pass type>/<serial>                            (latest pass)
  POST        v1/log
Authenticated calls carry `Authorization: ApplePass <authenticationToken>`. An unknown
serial answers exactly like a wrong token (401), so serials cannot be probed; an unknown
pass type answers 404.
"""

import hmac
import json
import logging

from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.http import http_date, parse_http_date_safe
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cards.models import BusinessCard
from wallet.errors import NotConfigured
from wallet.models import AppleDeviceRegistration, CardWalletState

from . import conf, pkpass

log = logging.getLogger("wallet.apple.passkit")
MAX_LOG_LINES = 50
MAX_LOG_LINE = 1000


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
    state = _authorized_state(request, pass_type_id, serial)
    if state is None:
        return _unauthorized()
    device_id = device_id[:255]  # the column's size; Apple's ids are far shorter
    if request.method == "DELETE":
        AppleDeviceRegistration.objects.filter(device_library_id=device_id, state=state).delete()
        return HttpResponse(status=200)
    try:
        push_token = json.loads(request.body or b"{}")["pushToken"]
    except (ValueError, KeyError, TypeError):
        return HttpResponse("Body must be JSON with a pushToken.", status=400)
    if not isinstance(push_token, str) or not push_token:
        return HttpResponse("pushToken must be a non-empty string.", status=400)
    registration, created = AppleDeviceRegistration.objects.get_or_create(
        device_library_id=device_id, state=state, defaults={"push_token": push_token}
    )
    if not created and registration.push_token != push_token:
        AppleDeviceRegistration.objects.filter(pk=registration.pk).update(push_token=push_token)
    return HttpResponse(status=201 if created else 200)


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
            return HttpResponse("passesUpdatedSince must be a tag we sent.", status=400)
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
    state = _authorized_state(request, pass_type_id, serial)
    if state is None:
        return _unauthorized()
    state = CardWalletState.objects.select_related("card__company").get(pk=state.pk)
    if not state.apple_pass_data:
        issue_first_pass(state)
    modified = int(state.apple_updated_at.timestamp())
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    if since is not None and modified <= since:
        return HttpResponse(status=304)
    return _pkpass_response(state, modified)


@csrf_exempt
@require_POST
def device_log(request):
    try:
        lines = json.loads(request.body or b"{}").get("logs", [])
    except (ValueError, AttributeError):
        lines = []
    if isinstance(lines, list):
        for line in lines[:MAX_LOG_LINES]:
            log.warning("Device log: %s", str(line)[:MAX_LOG_LINE])
    return HttpResponse(status=200)


# --- the public download -----------------------------------------------------------------


def issue_first_pass(state):
    """Build, sign and store a card's first pass (nothing to push: no device has it yet)."""
    built, data = pkpass.build_signed(state.card, state)
    state.store_apple_pass(data)
    CardWalletState.objects.filter(pk=state.pk).update(apple_content_hash=built.content_hash)
    state.apple_content_hash = built.content_hash


def pass_download(request, public_id):
    """The card's current pass for "Add to Apple Wallet" (public, like the card page)."""
    if not conf.is_configured():
        raise Http404("Apple Wallet is not configured.")
    card = get_object_or_404(BusinessCard.objects.select_related("company"), public_id=public_id)
    state = CardWalletState.objects.for_card(card)
    state.card = card
    try:
        if not state.apple_pass_data:
            issue_first_pass(state)
            data = state.apple_pass_data
        else:
            # The current card, built fresh. Not stored: storing would hide the change
            # from the next sync job, which must push it to devices already holding it.
            _built, data = pkpass.build_signed(card, state)
    except NotConfigured as exc:
        raise Http404("Apple Wallet is not configured.") from exc
    response = HttpResponse(bytes(data), content_type=pkpass.MIME_TYPE)
    filename = f"{slugify(card.full_name) or 'card'}.pkpass"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _pkpass_response(state, modified):
    response = HttpResponse(bytes(state.apple_pass_data), content_type=pkpass.MIME_TYPE)
    response["Last-Modified"] = http_date(modified)
    response["Cache-Control"] = "no-cache"
    return response
