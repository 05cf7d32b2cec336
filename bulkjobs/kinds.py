"""How a job kind plugs into the engine: its models, batch size, and one item handler.

A kind subclasses JobKind, sets its models and names, implements batch_handler()
returning a BatchHandler, and registers itself with `register()` from its
AppConfig.ready(). The engine opens each batch with `with kind.open_batch(job, items) as
handler:`, so whatever the handler opened is closed even when opening fails halfway.
"""

import contextlib
import functools
import logging
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils.translation import gettext_lazy

from . import conf, reasons
from .models import InterruptedPolicy

__all__ = [
    "BatchHandler",
    "InterruptedPolicy",
    "JobKind",
    "Outcome",
    "ProviderUnavailable",
    "RateLimited",
]


@dataclass(frozen=True)
class Outcome:
    """What happened to one item: done, retry later (transient), failed (permanent), or
    waiting: part of its work waits for a provider that refused the kind's credentials
    (one of several providers an item goes to, such as Google Wallet beside Apple
    Wallet). A waiting item goes back to pending after `retry_after` seconds without
    spending an attempt, its fields saved (what the other providers did), while the
    batch goes on with the next items; the job is paused with the outcome's reason at the
    batch's end, its pause clock running (PAUSE_LIMIT_HOURS), and the first batch that
    gets through ends the pause."""

    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"
    WAIT = "wait"

    kind: str
    reason: str = ""
    # Extra item fields the kind wants saved together with the outcome.
    fields: dict = field(default_factory=dict)
    # For retries: the provider's own wait (Retry-After), in seconds, if it gave one.
    retry_after: float | None = None

    @classmethod
    def done(cls, reason="", **fields):
        return cls(cls.DONE, reason, fields)

    @classmethod
    def retry(cls, reason, retry_after=None, **fields):
        return cls(cls.RETRY, reason, fields, retry_after)

    @classmethod
    def failed(cls, reason, **fields):
        return cls(cls.FAILED, reason, fields)

    @classmethod
    def wait(cls, reason, retry_after, **fields):
        return cls(cls.WAIT, reason, fields, retry_after)


class ProviderUnavailable(Exception):
    """The provider refused the whole batch (login refused, server down): stop the batch
    and try again next run, without spending the items' attempts.

    `outcome` is for a provider that stopped answering after it took the item in hand (a
    mail server silent after the whole message): the item is not given back but keeps
    that outcome (delivery unknown), and the batch stops all the same, so no further item
    is spent on a provider that does not answer.
    """

    def __init__(self, *args, outcome=None):
        super().__init__(*args)
        self.outcome = outcome


class RateLimited(Exception):
    """A shared rate limit has no token left and waiting for one is not worth it: stop the
    batch and try again later, without spending the item's attempt, and without pausing
    the job (a short wait is not an outage).

    `what` names the limit for people ("the Google Wallet rate limit (20/s)"); `next_at`
    is the Unix time at which its next token frees; `raised_at` when the limit refused.
    """

    def __init__(self, what, next_at):
        super().__init__(what, next_at)
        self.what = what
        self.next_at = next_at
        # The database's time, as next_at is (a host's clock may be minutes off).
        from .engine import clock

        self.raised_at = clock.time()

    @property
    def reason(self):
        """The job's reason while it waits, e.g. "Waiting for ...; next slot at 14:03:07"."""
        return waiting_reason(self.what, self.next_at)

    def __str__(self):
        return self.reason


def waiting_reason(what, next_at):
    """The reason "waiting" for the limit `what` until the Unix time `next_at`; its
    English is "Waiting for <what>; next slot at HH:MM:SS" (in the site's TIME_ZONE),
    its words name the time in the reader's zone."""
    return reasons.waiting(what, next_at)


class BatchHandler(ABC):
    """Handles the items of one batch; holds what they share (a connection, built parts).

    JobKind.open_batch() calls open(), then handle() per item, and always close(), also
    when open() failed halfway: close() must cope with a partly opened handler.
    """

    def open(self):  # noqa: B027 - an optional hook, deliberately not abstract
        """Acquire what the batch shares (connections, settings); may raise
        ProviderUnavailable. Nothing by default."""

    @abstractmethod
    def handle(self, item):
        """Do the item's work and return an Outcome (or raise ProviderUnavailable, or
        RateLimited when a shared limit has no token left before the work started)."""

    def close(self):  # noqa: B027 - an optional hook, deliberately not abstract
        """Release shared resources (connections); nothing by default."""

    def announce(self, item):  # noqa: B027 - an optional hook, deliberately not abstract
        """The item handle() gets after the current one, told before the current one is
        handled: a handler may make it ready (build a message, send what delivers
        nothing, such as an SMTP envelope), never do its work, and must not raise for it
        (handle() meets the same error and gives that item its outcome). The lane may
        stop before it: close() then undoes what was started. Nothing by default."""


class JobKind(ABC):
    #: short name used on the command line and in URLs ("email", "wallet")
    name = ""
    # The words below are shown to people: gettext_lazy, so each page gets them in its
    # company's language (locale/).
    #: human label for the dashboard section ("Email jobs")
    label = ""
    #: the same inside a sentence ("No email jobs yet."): lower case in English only
    label_in_sentence = ""
    #: what people call one job of this kind ("email job"), in confirmations and messages
    job_noun = gettext_lazy("job")
    #: what people call one item, singular and plural ("email", "emails")
    item_noun = gettext_lazy("item")
    item_noun_plural = gettext_lazy("items")
    #: past participle of an item's work, as in "Cancelled after 12 sent"
    done_verb = gettext_lazy("done")
    #: the badge of a job its provider paused (not "Paused": that is a person's pause)
    provider_wait_label = gettext_lazy("Waiting for the provider")
    #: logger name; the original's job class names so `grep ProcessBulk` finds the lines
    log_name = ""
    #: name of the processing management command (shown on the dashboard health line)
    command = ""
    job_model = None
    item_model = None
    #: key of the default batch size in settings.BULKJOBS
    batch_size_setting = ""
    #: key in settings.BULKJOBS of how many companies a run serves at once
    concurrency_setting = ""
    #: key in settings.BULKJOBS of the provider connections one batch may use at once
    connections_setting = ""
    #: name of the setting capping the provider connections of a process ("" = none)
    max_connections_setting = ""
    #: key in settings.BULKJOBS of each company's pace ("50/min"; 0 turns it off)
    company_rate_setting = ""
    #: key in settings.BULKJOBS of the waits before each retry ("1m,5m,…"), if the kind
    #: retries on a schedule rather than MAX_ATTEMPTS with exponential backoff
    retry_schedule_setting = ""
    #: what to do with an item found `processing` under a dead claim
    interrupted_policy = InterruptedPolicy.FAIL
    interrupted_reason = "Interrupted during processing; not retried automatically."
    #: The reason of an item a batch may have reached just before the database failed
    #: over to a standby that had not received its mark (asynchronous replication):
    #: with the FAIL policy such items are failed with it, not redone (see
    #: bulkjobs/engine/bookkeeping.py).
    failover_reason = (
        "The database failed over while this item may have been processed; not redone "
        "automatically."
    )
    #: Starts of the reasons of failed items whose side effect may have happened though
    #: nobody confirmed it (an email the server may have queued, an item interrupted
    #: mid-delivery): "Retry failed items" leaves them failed, and a person retries them
    #: on their own, after a confirmation (bulkjobs.ops.services). Prefixes, so that items
    #: failed before a rewording are still recognised. None by default.
    unknown_outcome_reasons = ()

    @property
    def logger(self):
        """The kind's logger, named log_name."""
        return logging.getLogger(self.log_name)

    @property
    def default_batch_size(self):
        return int(conf.get(self.batch_size_setting))

    @property
    def default_concurrency(self):
        return conf.get(self.concurrency_setting) if self.concurrency_setting else 1

    @property
    def connections_per_batch(self):
        return conf.get(self.connections_setting) if self.connections_setting else 1

    @property
    def max_connections(self):
        """The most provider connections a process may hold at once, or None (no limit
        beyond concurrency x connections per batch)."""
        return conf.get(self.max_connections_setting) if self.max_connections_setting else None

    @property
    def company_rate(self):
        """Each company's pace, a ratelimit.Rate, or None when it is off."""
        return conf.get(self.company_rate_setting) if self.company_rate_setting else None

    def company_bucket(self, company_id):
        """Key of the company's pace bucket, shared by every run on every host."""
        return f"{self.name}:company:{company_id}"

    def batch_rate_limits(self):
        """Shared limits that cost one token per item, taken by the engine per batch:
        a list of (bucket key, ratelimit.Rate, what people read, e.g. "the mail server's
        rate limit (500/h)"). None by default; limits per provider request are better
        taken inside the kind's clients."""
        return []

    def retry_exclusions(self, job):
        """Failed items of `job` that "Retry failed items" must leave failed, and why:
        (why, {label: condition}), e.g. ("their addresses are on the suppression list",
        {"hard bounce": Exists(...)}); each condition is a Q or boolean expression on the
        item model. None by default."""
        return "", {}

    def unknown_outcome(self):
        """The condition (a Q on the item model) matching the items whose reason starts
        with one of unknown_outcome_reasons; None when the kind has none."""
        conditions = [Q(reason__startswith=start) for start in self.unknown_outcome_reasons]
        return functools.reduce(operator.or_, conditions) if conditions else None

    def batch_items(self, queryset):
        """Hook to add select_related() and friends to the batch query."""
        return queryset

    def batch_order(self):
        """The order a batch takes its due items in: oldest first. A kind whose items
        may wait for one of its providers (Outcome.WAIT) takes those never tried first,
        so items given back again and again do not starve the others."""
        return ("id",)

    @abstractmethod
    def batch_handler(self, job, items):
        """Return a (not yet opened) BatchHandler for these items."""

    @contextlib.contextmanager
    def open_batch(self, job, items):
        """Context manager giving an opened BatchHandler; closes it on the way out, also
        when opening raised (ProviderUnavailable or anything else)."""
        handler = self.batch_handler(job, items)
        try:
            handler.open()
            yield handler
        finally:
            handler.close()

    def min_items_per_lane(self):
        """The fewest items worth a lane (a provider connection) of their own: a lane
        costs its handler's open() and a thread, worth it for a run of items, not for
        two. bulkjobs.engine.batch.MIN_ITEMS_PER_LANE (10) by default."""
        from .engine.batch import MIN_ITEMS_PER_LANE

        return MIN_ITEMS_PER_LANE

    def after_run(self):  # noqa: B027 - an optional hook, deliberately not abstract
        """Called when a run has served its companies (also when it failed): tidy what
        batches keep between runs (emails/connections.py). Nothing by default."""

    def describe_item(self, item):
        """Short, non-sensitive description of an item for log lines."""
        return f"item {item.pk}"

    #: Item fields the job page's search box matches by their start, case folded, as
    #: paths ("card__full_name"); those of the item's own table get a prefix index
    #: (bulkjobs.models.sql.prefix_index_sql) in the kind's migrations.
    search_fields = ()
    #: The search box's label ("Recipient's address or name starts with").
    search_label = gettext_lazy("Find an item")

    #: On the job page (not in the CSV), columns shown inside another: {detail's attname:
    #: the attname of the column it is shown in, under that column's value}.
    folded_columns = {}

    def item_columns(self):
        """Kind-specific item columns for the job page and CSV export: (header, attribute).

        By default every field the concrete item model adds to BulkJobItem except the job
        link; a foreign key shows its id (its attname), so listing items never queries
        the related table. A kind may override this to choose or rename columns.
        """
        from .models import BulkJobItem

        base = {f.name for f in BulkJobItem._meta.get_fields()} | {"id", "job"}
        return [
            (f.verbose_name if not f.is_relation else f"{f.verbose_name} id", f.attname)
            for f in self.item_model._meta.concrete_fields
            if f.name not in base
        ]


_registry = {}


def register(kind):
    from .web.jobcounts import connect

    _registry[kind.name] = kind
    connect(kind)
    return kind


def get_kind(name):
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise LookupError(f"Unknown job kind {name!r}; known kinds: {known}.") from None


def all_kinds():
    return list(_registry.values())


def kind_for_job(job):
    for kind in _registry.values():
        if isinstance(job, kind.job_model):
            return kind
    raise LookupError(f"No job kind handles {type(job).__name__}.")
