"""Wallet updates without a bulk job: saved and deleted cards reach the wallets by themselves.

Saving a card (in the app, the Django admin, a script: any Model.save()) queues it for
wallet sync once the save is committed; deleting a card stores a voided pass in place of
its pass, before the card row goes, and queues the push of that pass and the expiry of
its Google object. Both go through the job engine like any sync, in one *automatic* job
per company that collects the items until a processor run claims it: several edits of
a card before the next run give one item, so one push.

A company whose name, language, country, brand colour or logo changes has all its issued
cards queued the same way: each shows on every pass.

Which saves queue the card, and why:
- Google Wallet configured: every saved card. The "Add to Google Wallet" link only
  references the card's object, so the object has to exist before the link is offered.
- Apple Wallet configured: cards with a stored pass. A pass is built on demand when
  someone adds it, so a card nobody added has nothing on any device to update.
- Neither configured: nothing is queued (there would be nothing to sync to).

What a transaction changes is queued together when it commits: the cards it saved and
deleted are collected per company (PendingCards) and each company's are added to its
automatic job in one go, so deleting 500 cards in one request, admin action or queryset
costs a fixed number of queries for the queueing, not a transaction per card.
"""

import logging
import weakref
from collections import defaultdict

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.query import QuerySet

from bulkjobs import reasons
from bulkjobs.models import Status

from . import platforms
from .models import BulkWalletApiJob, BulkWalletApiJobItem, CardWalletState

log = logging.getLogger("wallet")

AUTOMATIC_REASON = "Automatic update: cards changed or deleted since the last run."
#: Ids per query when the cards of a commit are checked and queued (far below every
#: database's limit on parameters).
CHUNK_SIZE = 1000


class PendingCards:
    """The cards saved and deleted in one transaction, queued together when it commits.

    There is one per transaction and savepoint level (pending_cards()), and each change
    noted in it registers its flush() with transaction.on_commit(): the first to run
    queues everything, the others find nothing left (they cost no query). So it lives
    exactly as long as Django keeps its callbacks: a savepoint rolled back drops them
    all (they were registered at the same level) with whatever was noted in it, like the
    callbacks of single saves it replaces, and a transaction rolled back drops all; and
    whoever runs the callbacks registered since some point (Django's
    captureOnCommitCallbacks in tests) queues the changes made since then.
    """

    def __init__(self):
        #: company id -> ids of cards saved
        self.saved = defaultdict(set)
        #: company id -> ids of the wallet states of cards deleted (voided passes)
        self.voided = defaultdict(set)
        self.flushed = False

    def flush(self):
        """Queue what was noted: one check of which saved cards were issued, then each
        company's cards in one call of queue()."""
        if self.flushed:
            return
        self.flushed = True
        saved = _issued(self.saved)
        for company_id in sorted(saved.keys() | self.voided.keys()):
            try:
                queue(
                    company_id,
                    card_ids=saved.get(company_id, ()),
                    voided_state_ids=self.voided.get(company_id, ()),
                )
            except Exception:
                # As for a callback of its own: one company's failure (logged) does not
                # keep the others' cards from their wallets.
                log.exception("Could not queue wallet updates of company %s", company_id)


#: database connection -> {savepoint ids: PendingCards}; transactions belong to a
#: connection (one per thread, or per asynchronous context), so the batches do too.
_registry = weakref.WeakKeyDictionary()


def _batches():
    return _registry.setdefault(transaction.get_connection(), weakref.WeakValueDictionary())


def pending_cards():
    """The PendingCards of the current transaction and savepoint level, with its flush()
    registered with on_commit() for the change about to be noted; None outside a
    transaction (queue at once then).

    Kept by weak reference: only Django's list of commit callbacks holds it, so one whose
    savepoint or transaction was rolled back is gone, and the next change starts anew.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return None
    batches = _batches()
    key = tuple(connection.savepoint_ids)
    batch = batches.get(key)
    if batch is None or batch.flushed:
        batch = batches[key] = PendingCards()
    transaction.on_commit(batch.flush, robust=True)
    return batch


def _forget_saved(card_id):
    """A card deleted in the transaction that saved it is not queued as saved (its item
    could not reference it); its deletion is queued instead, if it was issued."""
    for batch in list(_batches().values()):
        for card_ids in batch.saved.values():
            card_ids.discard(card_id)


def card_saved(sender, instance, raw=False, **kwargs):
    """post_save of BusinessCard: queue the card once the save is committed (with the
    transaction's other cards)."""
    if raw:  # loading fixtures: nothing was issued for these cards yet
        return
    batch = pending_cards()
    if batch is None:
        _queue_saved({instance.company_id: {instance.pk}})
    else:
        batch.saved[instance.company_id].add(instance.pk)


def card_deleting(sender, instance, origin=None, **kwargs):
    """pre_delete of BusinessCard: void its pass while the card's data is still there,
    and queue the push and the Google expiry once the delete is committed.

    When the card goes because its company is deleted, the company's jobs go too and
    there is nobody left to tell; the voided pass is still stored for devices that ask.
    """
    _forget_saved(instance.pk)
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
    batch = pending_cards()
    if batch is None:
        queue(instance.company_id, voided_state_ids=[state.pk])
    else:
        batch.voided[instance.company_id].add(state.pk)


#: The company's fields its passes show: its name, the language of their words, the
#: country its phone numbers are read in, its brand colour and logo.
PASS_COMPANY_FIELDS = ("name", "language", "country", "brand_color", "logo")


def _stored(value):
    # A file field compares by the name stored in the column.
    return getattr(value, "name", value) or ("" if value is not None else value)


def company_saving(sender, instance, raw=False, **kwargs):
    """pre_save of Company: note whether what its passes show (PASS_COMPANY_FIELDS)
    changes, for company_saved()."""
    if raw or instance.pk is None:
        instance._wallet_changed = False
        return
    before = sender.objects.filter(pk=instance.pk).values(*PASS_COMPANY_FIELDS).first()
    instance._wallet_changed = before is not None and before != {
        name: _stored(getattr(instance, name)) for name in PASS_COMPANY_FIELDS
    }


def company_saved(sender, instance, raw=False, **kwargs):
    """post_save of Company: a change of what its passes show changes every pass of it,
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


def _queue_saved(card_ids_by_company):
    """Queue saved cards ({company id: card ids}) now; see _issued() for which."""
    for company_id, card_ids in _issued(card_ids_by_company).items():
        queue(company_id, card_ids=card_ids)


def _issued(card_ids_by_company):
    """{company id: ids of the saved cards to queue}: all with Google Wallet configured,
    those with a stored pass with Apple Wallet alone (one query per CHUNK_SIZE cards),
    none with neither."""
    wanted = {company: set(ids) for company, ids in card_ids_by_company.items() if ids}
    if not wanted or not any(entry["configured"] for entry in platforms.status().values()):
        return {}
    if platforms.is_configured(platforms.GOOGLE):
        return wanted
    card_ids = sorted(set().union(*wanted.values()))
    issued = set()
    for start in range(0, len(card_ids), CHUNK_SIZE):
        issued.update(
            CardWalletState.objects.filter(
                card_id__in=card_ids[start : start + CHUNK_SIZE], apple_pass_data__isnull=False
            ).values_list("card_id", flat=True)
        )
    result = {company: ids & issued for company, ids in wanted.items()}
    return {company: ids for company, ids in result.items() if ids}


def queue(company_id, card_ids=(), voided_state_ids=()):
    """Add items (cards to sync, deleted cards' states to void) to the company's pending
    automatic job, creating the job if there is none; returns the number of items added.
    An item already waiting there is not added again (the coalescing).

    Only a job nobody claimed yet takes new items: a claimed job may be about to finish,
    and its batch may have loaded the card before this change. Its row is locked while
    the items are added, so a run cannot claim it halfway (PostgreSQL and MariaDB;
    SQLite's IMMEDIATE transactions serialise writers anyway).

    Queries, however many items (up to CHUNK_SIZE; more take a few more): the lock, which
    also tells whether any of the items waits already; only if so, which ones; then the
    insert and the job's total. A new job is created with its total, so it needs no
    update, but its company's job count moves (bulkjobs.web.jobcounts).
    """
    wanted = [("card_id", value) for value in sorted(set(card_ids))]
    wanted += [("voided_state_id", value) for value in sorted(set(voided_state_ids))]
    if not wanted:
        return 0
    jobs = BulkWalletApiJob.objects.select_for_update().filter(
        company_id=company_id, automatic=True, status=Status.PENDING
    )
    if len(wanted) <= CHUNK_SIZE:
        items = BulkWalletApiJobItem.objects.filter(_matching(wanted), job=OuterRef("pk"))
        jobs = jobs.annotate(holds_any=Exists(items))
    with transaction.atomic():
        job = jobs.order_by("created_at", "id").first()
        created = job is None
        if created:
            job = BulkWalletApiJob.objects.create(
                company_id=company_id,
                automatic=True,
                total_items=len(wanted),
                **reasons.columns(AUTOMATIC_REASON),
            )
            new = wanted
        elif getattr(job, "holds_any", True):
            new = _not_waiting(job, wanted)
            if not new:
                return 0
        else:
            new = wanted
        BulkWalletApiJobItem.objects.bulk_create(
            [BulkWalletApiJobItem(job=job, **{field: value}) for field, value in new],
            batch_size=CHUNK_SIZE,
        )
        if not created:
            BulkWalletApiJob.objects.filter(pk=job.pk).update(
                total_items=F("total_items") + len(new)
            )
    log.info("Queued %d item(s) in automatic wallet job %s", len(new), job.pk)
    return len(new)


def _matching(pairs):
    """Q of the items holding any of these [(field, value)]."""
    condition = Q()
    for field in ("card_id", "voided_state_id"):
        values = [value for name, value in pairs if name == field]
        if values:
            condition |= Q(**{f"{field}__in": values})
    return condition


def _not_waiting(job, wanted):
    """The [(field, value)] of `wanted` that the job does not hold yet."""
    waiting = {"card_id": set(), "voided_state_id": set()}
    for start in range(0, len(wanted), CHUNK_SIZE):
        chunk = wanted[start : start + CHUNK_SIZE]
        for card_id, state_id in BulkWalletApiJobItem.objects.filter(
            _matching(chunk), job=job
        ).values_list("card_id", "voided_state_id"):
            waiting["card_id"].add(card_id)
            waiting["voided_state_id"].add(state_id)
    return [(field, value) for field, value in wanted if value not in waiting[field]]
