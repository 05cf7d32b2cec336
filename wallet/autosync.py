"""Wallet updates without a bulk job: saved and deleted cards reach the wallets by themselves.

Saving a card (in the app, the Django admin, a script: any Model.save()) queues it for
wallet sync once the save is committed; deleting a card stores a voided pass in place of
its pass, before the card row goes, and queues the push of that pass and the expiry of
its Google object. Both go through the job engine like any sync, in one *automatic* job
per company that collects the items until a processor run claims it: several edits of
a card before the next run give one item, so one push.

A company whose name or language changes has all its issued cards queued the same way:
both appear on every pass.

Which saves queue the card, and why:
- Google Wallet configured: every saved card. The "Add to Google Wallet" link only
  references the card's object, so the object has to exist before the link is offered.
- Apple Wallet configured: cards with a stored pass. A pass is built on demand when
  someone adds it, so a card nobody added has nothing on any device to update.
- Neither configured: nothing is queued (there would be nothing to sync to).
"""

import logging

from django.db import transaction
from django.db.models import F
from django.db.models.query import QuerySet

from bulkjobs.models import Status

from . import platforms
from .models import BulkWalletApiJob, BulkWalletApiJobItem, CardWalletState

log = logging.getLogger("wallet")

AUTOMATIC_REASON = "Automatic update: cards changed or deleted since the last run."


def card_saved(sender, instance, raw=False, **kwargs):
    """post_save of BusinessCard: queue the card once the save is committed."""
    if raw:  # loading fixtures: nothing was issued for these cards yet
        return
    card_id, company_id = instance.pk, instance.company_id
    transaction.on_commit(lambda: _queue_saved(card_id, company_id), robust=True)


def card_deleting(sender, instance, origin=None, **kwargs):
    """pre_delete of BusinessCard: void its pass while the card's data is still there,
    and queue the push and the Google expiry once the delete is committed.

    When the card goes because its company is deleted, the company's jobs go too and
    there is nobody left to tell; the voided pass is still stored for devices that ask.
    """
    state = CardWalletState.objects.filter(card=instance).first()
    if state is None or not state.is_issued:
        return
    if state.apple_pass_data and platforms.is_configured(platforms.APPLE):
        from .apple import store

        try:
            store.current_pass(state, instance, voided=True)
        except Exception:
            # Deleting a card must not fail because a pass cannot be signed (a broken
            # certificate, say); the devices then keep the last pass until they drop it.
            log.exception("Could not void the pass of card %s", instance.pk)
    if not _deleted_alone(instance, origin):
        return
    # Items still waiting to sync the card would find it gone and fail; they tell the
    # wallets about the deletion instead.
    BulkWalletApiJobItem.objects.filter(card=instance, status=Status.PENDING).update(
        voided_state=state
    )
    company_id, state_id = instance.company_id, state.pk
    transaction.on_commit(lambda: queue(company_id, voided_state_id=state_id), robust=True)


def company_saving(sender, instance, raw=False, **kwargs):
    """pre_save of Company: note whether what its passes show (its name, the language
    of their words) changes, for company_saved()."""
    if raw or instance.pk is None:
        instance._wallet_changed = False
        return
    before = sender.objects.filter(pk=instance.pk).values("name", "language").first()
    instance._wallet_changed = before is not None and before != {
        "name": instance.name,
        "language": instance.language,
    }


def company_saved(sender, instance, raw=False, **kwargs):
    """post_save of Company: a new name or language changes every pass of the company,
    so its issued cards are queued (once the save is committed)."""
    if raw or not getattr(instance, "_wallet_changed", False):
        return
    company_id = instance.pk
    transaction.on_commit(lambda: _queue_company(company_id), robust=True)


def _queue_company(company_id):
    if not any(entry["configured"] for entry in platforms.status().values()):
        return
    states = CardWalletState.objects.filter(card__company_id=company_id)
    if platforms.is_configured(platforms.GOOGLE):
        issued = states.exclude(apple_pass_data__isnull=True, google_object_id="")
    else:
        issued = states.filter(apple_pass_data__isnull=False)
    card_ids = list(issued.values_list("card_id", flat=True))
    if card_ids:
        queue(company_id, card_ids=card_ids)


def _deleted_alone(card, origin):
    """Whether the delete started at cards (one card or a queryset of them), rather than
    at the card's company, whose cascade removes the jobs an item would go into."""
    if isinstance(origin, QuerySet):
        return origin.model is type(card)
    return origin is None or isinstance(origin, type(card))


def _queue_saved(card_id, company_id):
    if not any(entry["configured"] for entry in platforms.status().values()):
        return
    if not platforms.is_configured(platforms.GOOGLE):
        issued = CardWalletState.objects.filter(card_id=card_id, apple_pass_data__isnull=False)
        if not issued.exists():
            return
    queue(company_id, card_ids=[card_id])


def queue(company_id, card_ids=(), voided_state_id=None):
    """Add items (cards to sync, or a deleted card's state to void) to the company's
    pending automatic job, creating the job if there is none; returns the number of
    items added. An item already waiting there is not added again (the coalescing).

    Only a job nobody claimed yet takes new items: a claimed job may be about to finish,
    and its batch may have loaded the card before this change. Its row is locked while
    the items are added, so a run cannot claim it halfway (PostgreSQL and MariaDB;
    SQLite's IMMEDIATE transactions serialise writers anyway).
    """
    if voided_state_id is not None:
        field, wanted = "voided_state_id", {voided_state_id}
    else:
        field, wanted = "card_id", set(card_ids)
    with transaction.atomic():
        job = (
            BulkWalletApiJob.objects.select_for_update()
            .filter(company_id=company_id, automatic=True, status=Status.PENDING)
            .order_by("created_at", "id")
            .first()
        )
        if job is None:
            job = BulkWalletApiJob.objects.create(
                company_id=company_id, automatic=True, reason=AUTOMATIC_REASON
            )
        waiting = BulkWalletApiJobItem.objects.filter(job=job, **{f"{field}__in": wanted})
        new = sorted(wanted - set(waiting.values_list(field, flat=True)))
        if not new:
            return 0
        BulkWalletApiJobItem.objects.bulk_create(
            [BulkWalletApiJobItem(job=job, **{field: value}) for value in new], batch_size=1000
        )
        BulkWalletApiJob.objects.filter(pk=job.pk).update(total_items=F("total_items") + len(new))
    log.info("Queued %d item(s) in automatic wallet job %s", len(new), job.pk)
    return len(new)
