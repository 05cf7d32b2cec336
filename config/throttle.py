"""Who is calling, and how often they may: the client address behind a proxy, and
per-address request limits for the endpoints anyone can reach without signing in (ESP
webhooks, unsubscribe, PassKit device registration).

The address is REMOTE_ADDR, or, behind a reverse proxy, the header named by
CLIENT_IP_HEADER (DJANGO_CLIENT_IP_HEADER), which that proxy must set itself, overwriting
what the client sent (nginx: `proxy_set_header X-Real-IP $remote_addr;` with
DJANGO_CLIENT_IP_HEADER=HTTP_X_REAL_IP). Sign-in throttling (config.signin, django-axes)
uses the same address.

Limits are buckets of bulkjobs.engine.ratelimit (database rows), so every web process on
every host counts together; the bucket of an IPv6 client is its /64 network, which one
host usually holds whole.
"""

import ipaddress
import random

from django.conf import settings
from django.http import HttpResponse

from bulkjobs.engine import clock, ratelimit
from bulkjobs.models import RateBucket

#: Bucket keys start with this, so the clean-up below never touches the engine's buckets.
PREFIX = "client:"
#: About one limited request in this many drops the buckets of quiet clients.
CLEANUP_ONE_IN = 200


def client_ip(request):
    """The client's address as text (None when there is none that parses)."""
    header = getattr(settings, "CLIENT_IP_HEADER", "")
    value = request.META.get(header, "") if header else ""
    # A header listing several (X-Forwarded-For) begins with whatever the client sent;
    # only the last entry was written by the proxy in front of this server.
    value = value.rpartition(",")[2].strip() or request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_key(request):
    """The address a limit counts: the IP, or an IPv6 client's /64 network."""
    address = client_ip(request)
    if not address:
        return "unknown"
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def rate_of(setting_name, default):
    """The rate named by a setting ("60/min"), or None when it is off ("0")."""
    return ratelimit.parse_rate(getattr(settings, setting_name, default), setting_name)


def allow(request, scope, rate):
    """Count one request of this client to `scope`; False once it is over `rate`."""
    if rate is None:
        return True
    key = f"{PREFIX}{scope}:{client_key(request)}"[:100]
    granted = ratelimit.take(key, rate, 1).granted > 0
    if random.randrange(CLEANUP_ONE_IN) == 0:  # noqa: S311 - not a secret
        # A bucket whose time is an hour past is full again: its row says nothing.
        RateBucket.objects.filter(key__startswith=PREFIX, tat__lt=clock.time() - 3600).delete()
    return granted


def quiet(response):
    """Mark a refusal as logged already, so that django.request adds no line per request:
    the caller logged its one line, or (over a limit) deliberately none."""
    response._has_been_logged = True
    return response


def too_many(text="Too many requests; try again in a minute."):
    """429 for a client over its limit; not logged (a flood would fill the log)."""
    response = HttpResponse(text, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "60"
    return quiet(response)
