"""How a job kind plugs into the engine: its models, batch size, and one item handler.

A kind subclasses JobKind, sets its models and names, implements open_batch() returning
a BatchHandler, and registers itself with `register()` from its AppConfig.ready().
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from . import conf


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

    Used as a context manager: __exit__ releases what the batch opened.
    """

    @abstractmethod
    def handle(self, item):
        """Do the item's work and return an Outcome (or raise ProviderUnavailable)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

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
    #: what to do with an item found `processing` under a dead claim: "fail" (its side
    #: effect may have happened and must not be repeated) or "redo" (idempotent)
    interrupted_policy = "fail"
    interrupted_reason = "Interrupted during processing; not retried automatically."

    @property
    def default_batch_size(self):
        return int(conf.get(self.batch_size_setting))

    def batch_items(self, queryset):
        """Hook to add select_related() and friends to the batch query."""
        return queryset

    @abstractmethod
    def open_batch(self, job, items):
        """Return a BatchHandler for these items (may raise ProviderUnavailable)."""

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
