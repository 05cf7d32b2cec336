"""A run's own record: when it started and finished, the gaps in which no run happened,
and the alerts due after it.

The ProcessorRun row of a kind is the dashboard's health line and the schedule behind a
job's "time left"; its last start is how a run tells a gap of downtime, whose length
is forgiven to every running job's inactivity and pause clocks.
"""

import logging

from django.db.models import Count, F, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import conf
from ..models import ProcessorRun, Status
from ..ops import alerts
from . import outage


def note_run_started(kind):
    """Record the run and move inactivity and pause clocks forward by any gap in which no
    run happened. Returns every kind's last start before this run ({kind name: time}),
    read in the same query, so the alerts can tell a stopped processor without another."""
    now = timezone.now()
    last_starts = dict(ProcessorRun.objects.values_list("kind", "last_started_at"))
    previous = last_starts.get(kind.name)
    if previous is None:
        ProcessorRun.objects.bulk_create(
            [ProcessorRun(kind=kind.name, last_started_at=now)], ignore_conflicts=True
        )
        return last_starts
    gap = now - previous
    changes = {"last_started_at": now}
    seconds = gap.total_seconds()
    if 0 < seconds <= conf.get("RUN_GAP_SECONDS"):
        # The schedule as it really is, smoothed over the last runs (a gap of downtime
        # is not the schedule).
        changes["interval_seconds"] = Coalesce(
            F("interval_seconds") * 0.7 + Value(0.3 * seconds), Value(seconds)
        )
    # Compare-and-set, so of several runs starting together only one forgives the gap.
    won = ProcessorRun.objects.filter(kind=kind.name, last_started_at=previous).update(**changes)
    if won and gap.total_seconds() > conf.get("RUN_GAP_SECONDS"):
        # Not a status change: only the clocks move (an empty paused_at stays empty).
        shifted = kind.job_model.objects.filter(
            status=Status.PROCESSING, activity_at__isnull=False
        ).update(activity_at=F("activity_at") + gap, paused_at=F("paused_at") + gap)
        if shifted:
            kind.logger.info(
                "No run for %s; inactivity clocks of %d job(s) moved forward", gap, shifted
            )
    return last_starts


def note_run_finished(kind, summary):
    """Record the run's end and summary, and count the companies with work then (in the
    same UPDATE): the dashboard's "time left" reads that count instead of counting every
    tenant's active jobs on each poll of each viewer."""
    ProcessorRun.objects.filter(kind=kind.name).update(
        last_finished_at=timezone.now(),
        last_summary=str(summary)[:300],
        companies_with_work=companies_with_work(kind),
    )


def companies_with_work(kind):
    """Subquery: how many companies have active jobs of the kind (all tenants), through
    the active-jobs index. Grouped by a constant, i.e. not at all: one row, 0 if none."""
    return Subquery(
        kind.job_model.objects.active()
        .order_by()
        .annotate(everyone=Value(1))
        .values("everyone")
        .annotate(companies=Count("company_id", distinct=True))
        .values("companies")
    )


def evaluate_alerts(kind, summary, last_starts):
    """Send the alerts due after this run (bulkjobs/ops/alerts.py). A broken alert (a
    template error) is logged, not raised: the run's work is done and recorded."""
    try:
        alerts.evaluate_after_run(kind, summary=summary, last_starts=last_starts)
    except Exception as exc:
        if outage.is_connection_lost(exc):
            raise
        logging.getLogger("bulkjobs.alerts").exception("Alerts could not be evaluated")
