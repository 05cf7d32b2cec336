"""Retention: delete finished jobs and their items once they are older than a cutoff.

`manage.py prune_jobs` calls prune() for every kind. It is safe beside running
processors: it only touches jobs that are finished (completed, failed, cancelled) and
finished before the cutoff, which no run claims; it first makes each such job
impossible to reopen (JobQuerySet.begin_prune()), then deletes its items a chunk per
transaction (so no lock is held for long, even on a job of 100,000 items) and the job
last, with the record of who acted on it (JobAction). Interrupted, it leaves a job with fewer items that the next prune finishes.
The suppression list is separate and kept; alert records older than the cutoff go too.
"""

import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from ..models import FINISHED_STATUSES, AlertDigest, AlertEvent, JobAction

#: Items deleted per transaction: small enough that no lock is held for long.
ITEMS_PER_TRANSACTION = 1000
#: Jobs read per query while pruning.
JOBS_PER_QUERY = 100
#: The reason a job shows while its items are being deleted.
PRUNING_REASON = "Being deleted: finished longer ago than the retention period."

_AGE = re.compile(r"^\s*(\d+)\s*([dh])\s*$")


def parse_age(text):
    """A timedelta from "180d" or "12h"; ValueError with what to write instead."""
    match = _AGE.match(text or "")
    if not match:
        raise ValueError(
            f"{text!r} is not an age; write a whole number of days or hours, like 180d or 12h."
        )
    number, unit = int(match.group(1)), match.group(2)
    age = timedelta(days=number) if unit == "d" else timedelta(hours=number)
    if age < timedelta(hours=1):
        raise ValueError("The age must be at least 1 hour (1h).")
    return age


@dataclass
class Pruned:
    jobs: int = 0
    items: int = 0


def prunable(kind, cutoff):
    """The kind's jobs that are finished and finished before `cutoff` (served by the jobs'
    (status, finished_at) index)."""
    return kind.job_model.objects.filter(status__in=FINISHED_STATUSES, finished_at__lt=cutoff)


def count(kind, cutoff):
    """What prune() would delete now (a dry run)."""
    jobs = prunable(kind, cutoff)
    return Pruned(
        jobs=jobs.count(), items=kind.item_model.objects.filter(job__in=jobs.values("pk")).count()
    )


def prune(kind, cutoff, items_per_transaction=ITEMS_PER_TRANSACTION):
    """Delete the kind's jobs finished before `cutoff` with their items; returns the counts."""
    pruned = Pruned()
    jobs = kind.job_model.objects
    while True:
        job_ids = list(
            prunable(kind, cutoff).order_by("pk").values_list("pk", flat=True)[:JOBS_PER_QUERY]
        )
        if not job_ids:
            return pruned
        for job_id in job_ids:
            # Reopened for a retry since the query: no longer finished, so left alone.
            if not jobs.begin_prune(job_id, cutoff, PRUNING_REASON):
                continue
            pruned.items += _delete_items(kind, job_id, items_per_transaction)
            with transaction.atomic():
                deleted, per_model = jobs.filter(pk=job_id, status__in=FINISHED_STATUSES).delete()
                if per_model.get(kind.job_model._meta.label):
                    # Who cancelled or retried it goes with the job (no foreign key does it).
                    JobAction.objects.filter(kind=kind.name, job_id=job_id).delete()
            pruned.jobs += bool(per_model.get(kind.job_model._meta.label))


def _delete_items(kind, job_id, chunk):
    deleted = 0
    items = kind.item_model.objects
    while True:
        with transaction.atomic():
            ids = list(
                items.filter(job_id=job_id).order_by("pk").values_list("pk", flat=True)[:chunk]
            )
            if not ids:
                return deleted
            # Nothing refers to items, so this is one DELETE ... WHERE id IN (...).
            count, _per_model = items.filter(pk__in=ids).delete()
        deleted += count


def prune_alert_records(cutoff):
    """Delete alert records (events, digests) older than the cutoff; returns how many."""
    events, _ = AlertEvent.objects.filter(created_at__lt=cutoff).delete()
    digests, _ = AlertDigest.objects.filter(sent_at__lt=cutoff).delete()
    return events + digests
