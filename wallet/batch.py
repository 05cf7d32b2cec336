"""One wallet batch: syncs each card to Apple Wallet and Google Wallet.

Sync is idempotent (same serial number and object id every time), so an interrupted item
is simply done again ("redo"). Per platform, an item ends synced, unchanged, skipped (not
configured) or failed; the item is done when every configured platform synced or was
unchanged, retried on a TransientError and failed on a PermanentError.

Apple: make the stored pass match the card (wallet/apple/store.py: a new version only
when the content changed, the same one the download and web service serve); if that
version's hash equals the last fully pushed one, nothing to do. Otherwise push to every
registered device, and only then record the hash, so a push that failed is repeated
when the item is retried. Which registrations an answer removes is
notify.notify_devices()'s business (wallet/apple/notify.py).

Per-platform pauses: a platform that refuses this installation's credentials or
permissions (a ProviderError: APNs refusing our key, token, certificate or topic;
Google's 401 after a token refresh or 403 PERMISSION_DENIED; a key Google refuses), or
that cannot be reached at all (Unreachable), would refuse every card alike. That
platform is paused for the rest of the batch (no further request to it), while the
other platform's updates go on. An item whose other platform is done waits
(Outcome.wait: back to pending after PLATFORM_RECHECK_SECONDS, no attempt spent, its
platform results saved, PlatformResult.PAUSED with the fix in its detail), and the job
is paused with that reason, its pause clock running (BULKJOBS_PAUSE_LIMIT_HOURS); the
first batch whose requests get through again ends the pause, so fixed settings resume
the work by themselves. When no platform can do anything for an item (the other one is
paused too, or not configured), the batch pauses as a whole (ProviderUnavailable), the
item given back.

Network faults (see wallet/errors.py Unreachable): a connection lost after a request was
sent, or an answer slower than APNS_TIMEOUT / GOOGLE_WALLET_TIMEOUT, retries that card
with backoff while the batch goes on (a push or PATCH sent twice is harmless).

Deleted cards (wallet/autosync.py): the item carries the card's wallet state, whose
voided pass was stored before the card row went; it is pushed like any new version, and
the Google object is patched to EXPIRED.

Provider rate limits (wallet/limits.py) are taken per request inside the clients; when
one has no token for a while, RateLimited leaves handle() and the engine gives the item
back without spending an attempt. The item is then redone from the start, which costs
at most a repeated empty push to the devices already told (they only ask what changed).

Several batches (companies) run at once in a run's threads: each has its own Google
client and session, and they share the run's APNs client (safe from any thread, see
wallet/apple/apns.py), the cached signing material and Google credentials.
"""

import logging

from django.core.exceptions import ImproperlyConfigured

from bulkjobs.kinds import BatchHandler, Outcome, ProviderUnavailable
from bulkjobs.reasons import Reason

from . import platforms
from .apple import apns, notify, store
from .apple import conf as apple_conf
from .errors import (
    NotConfigured,
    PermanentError,
    ProviderError,
    TransientError,
    Unreachable,
    WalletError,
)
from .models import CardWalletState, PlatformResult

log = logging.getLogger("ProcessBulkWalletApiJob")
DETAIL_MAX = 2000
#: google_content_hash of a deleted card's object once it was expired.
EXPIRED_MARK = "expired"
#: A platform's result as the item's English reason (and bulkjobs.reasons) names it.
RESULT_WORDS = {
    PlatformResult.SYNCED: "synced",
    PlatformResult.UNCHANGED: "unchanged",
    PlatformResult.SKIPPED: "skipped (not configured)",
    PlatformResult.FAILED: "failed",
    PlatformResult.PAUSED: "paused",
}
#: Seconds before an item waiting for a paused platform is tried again: each try is one
#: request to that platform (the first of its batch), so a fixed setting is noticed
#: within about a minute, without knocking on a refusing provider's door per card.
PLATFORM_RECHECK_SECONDS = 60


class _Paused(Exception):
    """The platform was paused earlier in this batch: no request is sent to it."""


def _labelled(label, error):
    """The error prefixed with its platform, unless the client's message already names it."""
    text = str(error)
    return text if text.startswith(label) else f"{label}: {text}"


class WalletBatch(BatchHandler):
    """One batch: signing material loaded once, one Google client, the run's APNs client."""

    def __init__(self, job, items):
        self.job = job
        self.items = items
        self.material = None
        self.apple_note = ""
        self.google = None
        self.google_note = ""
        self.states = {}
        self.voided_states = {}
        #: platform -> why it is paused for the rest of this batch (its refusal and fix)
        self.paused = {}

    def open(self):
        try:
            self.material = apple_conf.signing_material()
        except NotConfigured:
            self.apple_note = platforms.not_configured_note(platforms.APPLE)
        except ImproperlyConfigured as exc:
            self.paused[platforms.APPLE] = f"Apple Wallet settings are invalid: {exc}"
        if platforms.is_configured(platforms.GOOGLE):
            self._open_google()
        else:
            self.google_note = platforms.not_configured_note(platforms.GOOGLE)
        if self.material is None and self.google is None:
            if self.paused:
                raise ProviderUnavailable("; ".join(self.paused.values()))
            raise ProviderUnavailable(
                f"no wallet platform is configured ({self.apple_note} {self.google_note})"
            )
        self.states = self._load_states({item.card_id for item in self.items if item.card_id})
        # Items telling the wallets a card was deleted: its state, without the card.
        voided = {item.voided_state_id for item in self.items if item.voided_state_id}
        self.voided_states = (
            CardWalletState.objects.prefetch_related("registrations").in_bulk(voided)
            if voided
            else {}
        )

    @staticmethod
    def _load_states(card_ids):
        """The batch's wallet states with their devices, creating missing ones in one
        INSERT (a first sync would otherwise cost a look-up and an insert per card)."""
        states = CardWalletState.objects.filter(card_id__in=card_ids)
        missing = card_ids - set(states.values_list("card_id", flat=True))
        if missing:
            # ignore_conflicts: another process may create the same state meanwhile.
            CardWalletState.objects.bulk_create(
                [CardWalletState(card_id=card_id) for card_id in missing], ignore_conflicts=True
            )
        return {state.card_id: state for state in states.prefetch_related("registrations")}

    def _open_google(self):
        # The Google modules are imported only when Google Wallet is configured: the
        # client pulls in google-auth, and a broken Google install must not stop Apple.
        from .google.client import GoogleWalletClient

        try:
            client = GoogleWalletClient()
            self.google = client.__enter__()
        except (ProviderError, Unreachable) as exc:
            self.paused[platforms.GOOGLE] = str(exc)
        except (WalletError, ImproperlyConfigured, ValueError, OSError) as exc:
            self.paused[platforms.GOOGLE] = f"Google Wallet unavailable: {exc}"

    def close(self):
        # The APNs client is shared by the whole run (one HTTP/2 connection), so it stays.
        if self.google is not None:
            google, self.google = self.google, None
            google.__exit__(None, None, None)

    # --- one item ----------------------------------------------------------------------

    def handle(self, item):
        card = item.card
        if card is not None:
            state = self.states[card.pk]
            return self._sync(
                item,
                {
                    platforms.APPLE: lambda: self._apple(card, state),
                    platforms.GOOGLE: lambda: self._google(card, state),
                },
            )
        if item.voided_state_id in self.voided_states:
            state = self.voided_states[item.voided_state_id]
            return self._sync(
                item,
                {
                    platforms.APPLE: lambda: self._apple_voided(state),
                    platforms.GOOGLE: lambda: self._google_expired(state),
                },
            )
        return Outcome.failed(
            "Not synced: the card was deleted.",
            apple_result=PlatformResult.FAILED,
            apple_detail="Card deleted.",
            google_result=PlatformResult.FAILED,
            google_detail="Card deleted.",
        )

    def _sync(self, item, syncs):
        """Run each platform's sync and turn their results into the item's outcome."""
        fields, notes, transient, permanent = {}, {}, [], []
        retry_after = None
        for platform, sync in syncs.items():
            label = platforms.LABELS[platform]
            warning = ""
            try:
                if platform in self.paused:
                    raise _Paused
                result, detail, warning = sync()
            except _Paused:
                result, detail = PlatformResult.PAUSED, self.paused[platform]
            except (ProviderError, Unreachable) as exc:
                # Every card would be refused alike: no further request to this platform
                # in this batch; the other platform goes on (see the module docstring).
                # APNs's and Google's refusals name their provider and the fix; Google's
                # network errors are said with the platform, as before pauses were per
                # platform (the reasons registry reads them back so).
                unlabelled = platform == platforms.APPLE or isinstance(exc, ProviderError)
                paused = str(exc) if unlabelled else _labelled(label, exc)
                self.paused[platform] = paused
                result, detail = PlatformResult.PAUSED, self.paused[platform]
            except TransientError as exc:
                result, detail = PlatformResult.FAILED, f"Temporary failure: {exc}"
                transient.append(_labelled(label, exc))
                if exc.retry_after:
                    retry_after = max(retry_after or 0, exc.retry_after)
            except PermanentError as exc:
                result, detail = PlatformResult.FAILED, str(exc)
                permanent.append(_labelled(label, exc))
            if result == PlatformResult.UNCHANGED:
                # Redone after a wait for the other platform: what this one did then stands.
                earlier = getattr(item, f"{platform}_result")
                if earlier == PlatformResult.SYNCED:
                    result, detail = earlier, getattr(item, f"{platform}_detail")
            fields[f"{platform}_result"] = result
            fields[f"{platform}_detail"] = detail[:DETAIL_MAX]
            notes[platform] = RESULT_WORDS[result]
            if warning:
                # Said in the item's reason too: it asks an operator to act.
                notes[f"{platform}_note"] = warning.rstrip(".")
        paused = [
            platform for platform in syncs if fields[f"{platform}_result"] == PlatformResult.PAUSED
        ]
        if paused and all(
            fields[f"{platform}_result"] in (PlatformResult.PAUSED, PlatformResult.SKIPPED)
            for platform in syncs
        ):
            # Nothing could be done for this card: given back, the batch paused as a whole.
            raise ProviderUnavailable("; ".join(self.paused[platform] for platform in paused))
        if permanent:
            return Outcome.failed("; ".join(permanent + transient), **fields)
        if transient:
            return Outcome.retry("; ".join(transient), retry_after=retry_after, **fields)
        if paused:
            return Outcome.wait(
                "; ".join(self.paused[platform] for platform in paused),
                retry_after=PLATFORM_RECHECK_SECONDS,
                **fields,
            )
        return Outcome.done(Reason("wallet_synced", notes), **fields)

    def _apple(self, card, state):
        if self.material is None:
            return PlatformResult.SKIPPED, self.apple_note, ""
        # The same stored version the download and the web service serve (one per
        # content); only a version devices were not yet told about is pushed.
        stored = store.current_pass(state, card, self.material)
        if state.apple_pass_hash == state.apple_content_hash:
            if stored:  # the card's first pass: ready for "Add to Apple Wallet"
                return PlatformResult.SYNCED, "Pass issued; no device holds it yet.", ""
            return PlatformResult.UNCHANGED, "The pass is up to date.", ""
        return self._push_version(state, "Pass updated")

    def _apple_voided(self, state):
        if self.material is None:
            return PlatformResult.SKIPPED, self.apple_note, ""
        if not state.apple_pass_data:
            return PlatformResult.SKIPPED, "No pass was issued for the deleted card.", ""
        if state.apple_pass_hash == state.apple_content_hash:
            return PlatformResult.UNCHANGED, "The voided pass was pushed already.", ""
        return self._push_version(state, "Pass voided")

    def _push_version(self, state, what):
        """Push the stored version to every device, then record it as pushed; returns
        the platform's (result, detail, warning). Recorded only if no newer version was
        stored meanwhile, so that one is pushed by a later item rather than taken for
        pushed."""
        pushed_hash = state.apple_pass_hash
        report = self._push_all(state)
        if CardWalletState.objects.filter(pk=state.pk, apple_pass_hash=pushed_hash).update(
            apple_content_hash=pushed_hash
        ):
            state.apple_content_hash = pushed_hash
        return PlatformResult.SYNCED, f"{what}; " + report.describe(), report.warning()

    def _push_all(self, state):
        """Tell the pass's devices; a provider-wide refusal or outage (ProviderError,
        Unreachable) pauses Apple without spending the cards' attempts (the content hash
        is not recorded yet, so this card is pushed again once APNs takes pushes)."""
        registrations = list(state.registrations.all())
        if not registrations:
            return notify.PushReport()
        try:
            return notify.notify_devices(registrations, apns.shared_client())
        except (ImproperlyConfigured, NotConfigured) as exc:
            raise ProviderError(f"APNs settings are invalid: {exc}") from exc

    def _google(self, card, state):
        if self.google is None:
            return PlatformResult.SKIPPED, self.google_note, ""
        from .google.payload import object_id_for

        result, new_hash = self.google.sync_card(card, state.google_content_hash)
        object_id = object_id_for(card)
        CardWalletState.objects.filter(pk=state.pk).update(
            google_content_hash=new_hash, google_object_id=object_id
        )
        state.google_content_hash, state.google_object_id = new_hash, object_id
        if result == PlatformResult.UNCHANGED:
            return PlatformResult.UNCHANGED, "The object is up to date.", ""
        return PlatformResult.SYNCED, f"Object {object_id} updated.", ""

    def _google_expired(self, state):
        if self.google is None:
            return PlatformResult.SKIPPED, self.google_note, ""
        object_id = state.google_object_id
        if not object_id:
            return PlatformResult.SKIPPED, "No Google object was created for the deleted card.", ""
        if state.google_content_hash == EXPIRED_MARK:
            return PlatformResult.UNCHANGED, f"Object {object_id} was expired already.", ""
        self.google.expire_object(object_id)
        CardWalletState.objects.filter(pk=state.pk).update(google_content_hash=EXPIRED_MARK)
        state.google_content_hash = EXPIRED_MARK
        return PlatformResult.SYNCED, f"Object {object_id} expired.", ""
