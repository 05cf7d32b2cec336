"""A finished job's failed items grouped by cause, in plain words, with whether "Retry"
queues them: "2 × address does not exist: blocked, cannot be retried · 1 × mailbox full:
can be retried".

What Retry queues is what bulkjobs.ops.services.retry_failed_items() queues: the failed
items the kind does not exclude (kind.retry_exclusions(): suppressed addresses) and whose
delivery is known (kind.unknown_outcome(): those have an action of their own, confirmed).
The same conditions are counted here, in the database, so the button's number and what
it does never differ.

The grouping is one GROUP BY over the job's failed items (through the items' (job,
status) index): by reason code and parameters and the start of the provider's reply,
where the SMTP status lives ("550 5.1.1"); the words are made from those in Python and
groups with the same words are merged.
"""

import functools
import operator
import re
from dataclasses import dataclass

from django.db.models import Case, Count, Q, Value, When
from django.db.models.functions import Substr
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import reasons
from ..models import Status

#: Characters of the provider's reply that hold its SMTP status: "550 5.1.1".
REPLY_HEAD = 9
#: Characters of an English reason written before codes existed that are grouped on.
LEGACY_HEAD = 200
#: At most this many groups are read (the largest first); a job with more distinct
#: causes lists the rest as "other causes" so the page stays short and cheap.
MAX_GROUPS = 100

_SMTP_STATUS = re.compile(r"\s*(\d{3})(?:[ -](\d)\.(\d{1,3})\.(\d{1,3}))?")

# Plain words for what an SMTP status says about the recipient (RFC 3463 subjects).
ADDRESS_UNKNOWN = gettext_lazy("address does not exist")
DOMAIN_UNKNOWN = gettext_lazy("the address's domain does not exist")
MAILBOX_FULL = gettext_lazy("mailbox full")
MAILBOX_DISABLED = gettext_lazy("mailbox disabled")
REFUSED_POLICY = gettext_lazy("refused by the recipient's server (spam or policy)")
MESSAGE_TOO_BIG = gettext_lazy("email too large for the recipient's server")

#: Causes whose reason is a sentence of its own ("Not sent: …"), in the list's words.
CODE_WORDS = {
    "suppressed": gettext_lazy("on the suppression list (unsubscribed or bounced before)"),
    "card_deleted": gettext_lazy("the card was deleted"),
    "card_deleted_sync": gettext_lazy("the card was deleted"),
}

#: What Retry does with a group's items.
RETRYABLE = "retryable"
BLOCKED = "blocked"
UNKNOWN = "unknown"


def smtp_words(reply):
    """Plain words for the status an SMTP reply starts with, or None when it says
    nothing more specific than the reason's own words."""
    match = _SMTP_STATUS.match(reply or "")
    if not match:
        return None
    subject, detail = match.group(3), match.group(4)
    if subject is not None:
        enhanced = (int(subject), int(detail))
        if enhanced in ((1, 1), (1, 10), (1, 6)):
            return ADDRESS_UNKNOWN
        if enhanced == (1, 2):
            return DOMAIN_UNKNOWN
        if enhanced == (2, 2):
            return MAILBOX_FULL
        if enhanced == (2, 1):
            return MAILBOX_DISABLED
        if enhanced in ((2, 3), (3, 4)):
            return MESSAGE_TOO_BIG
        if enhanced[0] == 7:
            return REFUSED_POLICY
    # A bare reply code says too little: "550" serves an unknown mailbox and a policy
    # block alike, and the engine (emails/status.py) does not take it for either. The
    # group keeps the reason's own words.
    return None


def cause_words(code, params, reply_head, legacy_text):
    """The plain words of one group's cause: the SMTP status's meaning where the reply
    has one, else the reason's own words without the provider's (they differ per item)."""
    if code:
        reason = reasons.Reason(code, params or {}, reply=reply_head)
    else:
        reason = reasons.as_reason(legacy_text)
    if reason.code == "gave_up":
        reason = reasons.cause(reason)
    words = smtp_words(reason.reply) if reason.code.startswith(("smtp_", "esp_")) else None
    if words is None:
        words = CODE_WORDS.get(reason.code)
    if words is not None:
        return str(words)
    if not reason.code:
        return reason.text
    return str(reasons.render(reason.code, reason.params, text=reason.text)).rstrip(".")


@dataclass
class Group:
    words: str
    outcome: str
    count: int = 0
    #: what keeps a blocked group failed ("hard bounce"), when the kind says
    blocked_by: str = ""

    @property
    def retry_words(self):
        if self.outcome == RETRYABLE:
            return _("can be retried")
        if self.outcome == UNKNOWN:
            return _("delivery unknown: retried only when you confirm it")
        if self.blocked_by:
            return _("blocked (%(why)s), cannot be retried") % {"why": self.blocked_by}
        return _("blocked, cannot be retried")

    def __str__(self):
        return _("%(count)s × %(cause)s: %(retry)s") % {
            "count": reasons.number(self.count),
            "cause": self.words,
            "retry": self.retry_words,
        }


@dataclass
class Failures:
    groups: list
    retryable: int = 0
    unknown: int = 0
    blocked: int = 0

    def __bool__(self):
        return bool(self.groups)

    def __str__(self):
        return " · ".join(str(group) for group in self.groups)


def _conditions(kind, job):
    """(exclusion labels and conditions, the condition of "excluded by any", the
    condition of "delivery unknown and not excluded"), as retry_failed_items() uses them."""
    _why, exclusions = kind.retry_exclusions(job)
    exclude = (
        functools.reduce(operator.or_, (Q(c) for c in exclusions.values())) if exclusions else None
    )
    is_unknown = kind.unknown_outcome()
    if is_unknown is not None and exclude is not None:
        is_unknown = is_unknown & ~exclude
    return exclusions, exclude, is_unknown


def failures(kind, job):
    """The job's failed items grouped by cause (a Failures), largest group first; one
    query, none for a job without failed items."""
    if not job.failed_items:
        return Failures([])
    exclusions, exclude, is_unknown = _conditions(kind, job)
    counts = {"n": Count("pk")}
    for n, condition in enumerate(exclusions.values()):
        counts[f"skip{n}"] = Count("pk", filter=Q(condition))
    if is_unknown is not None:
        counts["unknown"] = Count("pk", filter=is_unknown)
    rows = (
        kind.item_model.objects.filter(job_id=job.pk, status=Status.FAILED)
        .order_by()
        .values(
            "reason_code",
            "reason_params",
            head=Substr("provider_reply", 1, REPLY_HEAD),
            legacy=Case(
                When(reason_code="", then=Substr("reason", 1, LEGACY_HEAD)), default=Value("")
            ),
        )
        .annotate(**counts)
        .order_by("-n")[:MAX_GROUPS]
    )
    labels = list(exclusions)
    merged = {}
    for row in rows:
        words = cause_words(row["reason_code"], row["reason_params"], row["head"], row["legacy"])
        parts = [(UNKNOWN, "", row.get("unknown", 0))]
        parts += [(BLOCKED, str(label), row[f"skip{n}"]) for n, label in enumerate(labels)]
        # An item is counted under one exclusion only, like Retry's own sentence.
        rest = row["n"] - sum(count for _o, _l, count in parts)
        parts.append((RETRYABLE, "", rest))
        for outcome, label, count in parts:
            if count <= 0:
                continue
            group = merged.setdefault(
                (words, outcome, label), Group(words, outcome, blocked_by=label)
            )
            group.count += count
    groups = sorted(merged.values(), key=lambda g: (-g.count, g.words))
    result = Failures(groups)
    for group in groups:
        if group.outcome == RETRYABLE:
            result.retryable += group.count
        elif group.outcome == UNKNOWN:
            result.unknown += group.count
        else:
            result.blocked += group.count
    return result


def retryable_counts(kind, jobs):
    """{job id: failed items Retry would queue} for some jobs of one company (a
    dashboard page's): one query, none when no job can be retried."""
    jobs = [job for job in jobs if job.failed_items]
    if not jobs:
        return {}
    _exclusions, exclude, is_unknown = _conditions(kind, jobs[0])
    items = kind.item_model.objects.filter(
        job_id__in=[job.pk for job in jobs], status=Status.FAILED
    ).order_by()
    if exclude is not None:
        items = items.exclude(exclude)
    if is_unknown is not None:
        items = items.exclude(is_unknown)
    counts = dict(items.values_list("job_id").annotate(n=Count("pk")))
    return {job.pk: counts.get(job.pk, 0) for job in jobs}
