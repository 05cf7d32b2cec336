"""How a job kind plugs into the engine: its models, batch size, and one item handler.

A kind subclasses JobKind, sets its models and names, implements batch_handler()
returning a BatchHandler, and registers itself with `register()` from its
AppConfig.ready(). The engine opens each batch with `with kind.open_batch(job, items) as
handler:`, so whatever the handler opened is closed even when opening fails halfway.
"""

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from . import conf
from .models import InterruptedPolicy

__all__ = ["BatchHandler", "InterruptedPolicy", "JobKind", "Outcome", "ProviderUnavailable"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one item: done, retry later (transient) or failed (permanent)."""

    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"

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


class ProviderUnavailable(Exception):
    """The provider refused the whole batch (login refused, server down): stop the batch
    and try again next run, without spending the items' attempts."""


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
        """Do the item's work and return an Outcome (or raise ProviderUnavailable)."""

    def close(self):  # noqa: B027 - an optional hook, deliberately not abstract
        """Release shared resources (connections); nothing by default."""


class JobKind(ABC):
    #: short name used on the command line and in URLs ("email", "wallet")
    name = ""
    #: human label for the dashboard section
    label = ""
    #: logger name; the original's job class names so `grep ProcessBulk` finds the lines
    log_name = ""
    #: name of the processing management command (shown on the dashboard health line)
    command = ""
    job_model = None
    item_model = None
    #: key of the default batch size in settings.BULKJOBS
    batch_size_setting = ""
    #: what to do with an item found `processing` under a dead claim
    interrupted_policy = InterruptedPolicy.FAIL
    interrupted_reason = "Interrupted during processing; not retried automatically."

    @property
    def default_batch_size(self):
        return int(conf.get(self.batch_size_setting))

    def batch_items(self, queryset):
        """Hook to add select_related() and friends to the batch query."""
        return queryset

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

    def describe_item(self, item):
        """Short, non-sensitive description of an item for log lines."""
        return f"item {item.pk}"

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
    _registry[kind.name] = kind
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
