"""A run's own record: when it started and finished, the gaps in which no run happened,
a failover of the database, and the alerts due after it.

The ProcessorRun row of a kind is the dashboard's health line and the schedule behind a
job's "time left"; its last start is how a run tells a gap of downtime, whose length
is forgiven to every running job's inactivity and pause clocks. The database identity
it keeps (engine/clock.py) is how a run tells a failover: a standby promoted to primary
holds claims that no live run owns (their runs wrote them to the old primary), so they
are released at once instead of after the stuck rule.
"""

import logging

from django.db.models import Count, F, Subquery, Value
from django.db.models.functions import Coalesce

from .. import conf
from ..models import InterruptedPolicy, ProcessorRun, Status
from ..ops import alerts
from . import clock, outage
from .summary import recount


def note_run_started(kind):
    """Record the run and move inactivity and pause clocks forward by any gap in which no
    run happened. Returns every kind's last start before this run ({kind name: time}),
    read in the same query, so the alerts can tell a stopped processor without another."""
    now = clock.now()
    reading = clock.reading()
    database = {"database_identity": reading.identity, "marks_durable": reading.durable}
    rows = ProcessorRun.objects.values_list(
        "kind", "last_started_at", "database_identity", "marks_durable"
    )
    last_starts, seen = {}, {}
    for name, started, identity, durable in rows:
        last_starts[name], seen[name] = started, (identity, durable)
    previous = last_starts.get(kind.name)
    if previous is None:
        ProcessorRun.objects.bulk_create(
            [ProcessorRun(kind=kind.name, last_started_at=now, **database)],
            ignore_conflicts=True,
        )
        return last_starts
    gap = now - previous
    changes = {"last_started_at": now, **database}
    seconds = gap.total_seconds()
    if 0 < seconds <= conf.get("RUN_GAP_SECONDS"):
        # The schedule as it really is, smoothed over the last runs (a gap of downtime
        # is not the schedule).
        changes["interval_seconds"] = Coalesce(
            F("interval_seconds") * 0.7 + Value(0.3 * seconds), Value(seconds)
        )
    # Compare-and-set, so of several runs starting together only one forgives the gap.
    won = ProcessorRun.objects.filter(kind=kind.name, last_started_at=previous).update(**changes)
    was, durable = seen[kind.name]
    if won and was and reading.identity and was != reading.identity:
        release_claims_after_failover(kind, was, reading.identity, durable, now)
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


def release_claims_after_failover(kind, was, now_is, durable, now):
    """The database that answers is not the one the last run wrote to (a standby was
    promoted, or a copy restored): every claim on it was taken before, by runs that are
    gone or now hold a claim of nothing. Release them all at once; the items those runs
    left `processing` are settled by the kind's interrupted policy when claimed next.

    If the old server's commits were not known to be on its standbys (`durable`, as the
    last run found it: asynchronous replication), the new one may lack the marks of the
    items a batch processed in the replication lag: they look pending. For a kind whose
    side effects must not be repeated (InterruptedPolicy.FAIL), the items each claimed
    job's batch could have reached (the next batch size of pending items, in the order a
    batch takes them) are failed with the kind's failover_reason instead of being done
    again. Batches started within the lag itself left no trace on the new server: only
    synchronous replication protects those (docs/lifecycle.md)."""
    jobs = kind.job_model.objects
    claimed = list(jobs.filter(claim_token__isnull=False).values_list("pk", flat=True))
    released = jobs.release_all()
    kind.logger.warning(
        "The database changed since the last run (was %s, now %s: a failover or a "
        "restored copy); %d claim(s) from before it released",
        was,
        now_is,
        released,
    )
    if durable or kind.interrupted_policy != InterruptedPolicy.FAIL:
        return released
    items = kind.item_model.objects
    for job_pk in claimed:
        failed = items.fail_possibly_processed(
            job_pk, kind.default_batch_size, kind.failover_reason, now
        )
        if failed:
            recount(kind, job_pk)
            kind.logger.warning(
                "Job %s: %d item(s) its batch may have reached before the failover failed "
                "as unknown, not redone (the old server's standbys were not synchronous)",
                job_pk,
                failed,
            )
    return released


def note_run_finished(kind, summary):
    """Record the run's end and summary, this host's clock skew, and count the companies
    with work then (in the same UPDATE): the dashboard's "time left" reads that count
    instead of counting every tenant's active jobs on each poll of each viewer."""
    ProcessorRun.objects.filter(kind=kind.name).update(
        last_finished_at=clock.now(),
        last_summary=str(summary)[:300],
        companies_with_work=companies_with_work(kind),
        clock_skew_seconds=clock.reading().offset,
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
        alerts.evaluate_after_run(kind, now=clock.now(), summary=summary, last_starts=last_starts)
    except Exception as exc:
        if outage.is_outage(exc):
            raise
        logging.getLogger("bulkjobs.alerts").exception("Alerts could not be evaluated")
