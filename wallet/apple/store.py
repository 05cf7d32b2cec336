"""One stored pass per card version, and the HTTP validators that come from the version.

Every path that hands out a pass (the "Add to Apple Wallet" download, the PassKit web
service, the sync job) calls current_pass(): it builds the card's pass unsigned, and only
when its content (the manifest's hash) differs from the stored pass does it sign and
store a new version. So every path serves the same bytes for the same content, and a
refresh after an edit gets the new pass, never an older stored one.

A version is identified by its update tag (milliseconds since the epoch, strictly
increasing per pass): the tag is the ETag and the PassKit "lastUpdated" value. HTTP dates
have whole seconds, so Last-Modified alone cannot tell two versions stored within one
second apart; not_modified() answers such an If-Modified-Since with the pass (see
CardWalletState.apple_shares_second) rather than with a 304 that could be stale.
"""

from django.utils import timezone
from django.utils.http import parse_etags, parse_http_date_safe

from wallet.models import CardWalletState

from . import pkpass

#: The fields a store writes, re-read when another process stored first.
STORED_FIELDS = [
    "apple_pass_data",
    "apple_pass_hash",
    "apple_content_hash",
    "apple_update_tag",
    "apple_updated_at",
    "apple_shares_second",
    "voided_at",
]
#: How many times a store is retried when other processes keep storing first.
STORE_ATTEMPTS = 3


def current_pass(state, card, material=None, voided=False):
    """Make the stored pass match the card's content; returns True when it stored one.

    `state.card` need not be loaded: `card` is what the pass is built from. A card's
    first pass also counts as pushed (no device can hold a pass that was never stored),
    so the sync job only pushes versions that follow one a device may have.
    """
    built = pkpass.build(card, state, voided=voided)
    for _attempt in range(STORE_ATTEMPTS):
        if state.apple_pass_data and state.apple_pass_hash == built.content_hash:
            return False
        data = pkpass.package(built, pkpass.sign(built.manifest, material))
        if store(state, data, built.content_hash, voided=voided):
            return True
        # Another process stored a version since we read the state: look at it again.
        state.refresh_from_db(fields=STORED_FIELDS)
    return False


def store(state, data, content_hash, voided=False, now=None):
    """Store `data` as the pass's next version if nobody stored one since `state` was read.

    A compare-and-set on the update tag: two processes storing at once cannot give two
    versions the same tag (and so the same ETag). Returns False when another won.
    """
    now = now or timezone.now()
    previous_tag = state.apple_update_tag
    tag = max(previous_tag + 1, int(now.timestamp() * 1000))
    previous = state.apple_updated_at
    shares_second = previous is not None and int(previous.timestamp()) == int(now.timestamp())
    changes = {
        "apple_pass_data": data,
        "apple_pass_hash": content_hash,
        "apple_update_tag": tag,
        "apple_updated_at": now,
        "apple_shares_second": shares_second,
    }
    if not state.apple_pass_data:
        changes["apple_content_hash"] = content_hash
    if voided:
        changes["voided_at"] = now
    if not CardWalletState.objects.filter(pk=state.pk, apple_update_tag=previous_tag).update(
        **changes
    ):
        return False
    for name, value in changes.items():
        setattr(state, name, value)
    return True


def not_modified(request, state):
    """Whether the device already holds the stored version (answer 304).

    If-None-Match, when sent, decides alone (RFC 9110 13.2.2) and is exact. Otherwise
    If-Modified-Since: the device holds a version stored in that second; it is the
    current one unless the current one shares its second with the version before it.
    """
    if_none_match = request.headers.get("If-None-Match", "").strip()
    if if_none_match:
        if if_none_match == "*":
            return True
        # Weak comparison, as GET allows: W/"1" matches "1".
        sent = {tag.removeprefix("W/") for tag in parse_etags(if_none_match)}
        return state.etag in sent
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    if since is None or state.apple_updated_at is None:
        return False
    stored_second = int(state.apple_updated_at.timestamp())
    return stored_second < since or (stored_second == since and not state.apple_shares_second)
