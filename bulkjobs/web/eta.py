"""How long a running job still needs, from the schedule it is really processed on.

A job is worked on in batches: each run (cron every minute, or workers looping) serves
every company with work a batch at a time, up to `concurrency` companies at once, within
its time budget, and no company faster than its pace (BULKJOBS_*_COMPANY_RATE). So the
estimate comes from those settings, the measured interval between runs and the measured
time per item, not from the job's average so far (which counts the time it spent queued
and says "6 minutes" for 4,950 emails that at 50 a minute take 99).

A company's active jobs take turns, one batch each (bulkjobs.engine.claim.turn_order()),
so a running job shares its company's pace with the company's other jobs:
items_until_done() counts what the company processes before the job is done, and
batch_seconds() how long one batch slot of the company lasts (bulkjobs.web.queue reads
both for a waiting job's start).

items_per_minute(), seconds_left(), items_until_done() and batch_seconds() are pure
functions (tested with tables of cases in tests/engine/test_eta.py); schedule_for() reads the settings, and
schedules() adds what was measured: the run interval and companies with work as the
last run recorded them (processor_runs()), and the time per item from the company's
hourly activity (seconds_per_item()).
"""

from dataclasses import dataclass
from datetime import timedelta

from .. import conf
from ..engine.activity import hour_start
from ..models import ProcessorRun
from .charts import read_activity

#: Seconds between runs when none was measured yet: cron's minute.
CRON_INTERVAL = 60.0
#: Seconds per item before any batch was measured: one provider round trip and a little.
DEFAULT_SECONDS_PER_ITEM = 0.1
#: Hours of batches the measured time per item covers (those of the hourly chart).
MEASURED_HOURS = 24


@dataclass(frozen=True)
class Schedule:
    #: the company's pace in items per minute; None when it is off
    pace_per_minute: float | None
    batch_size: int
    #: seconds between the starts of two runs
    run_interval: float
    #: a run's time budget in seconds (BULKJOBS_MAX_SECONDS)
    run_budget: float
    #: companies a run serves at once
    concurrency: int
    #: companies with work of this kind now (they share the runs)
    companies: int
    #: measured wall-clock seconds per item of a batch
    seconds_per_item: float = DEFAULT_SECONDS_PER_ITEM


def items_per_minute(schedule):
    """Items one company gets through per minute on this schedule.

    Per run, `concurrency` workers each fit budget / batch-time batches (at least one:
    a batch in flight is finished), shared by the companies with work; a company is never
    served faster than its pace, nor faster than one batch at a time allows.
    """
    s = schedule
    item_seconds = max(s.seconds_per_item, 1e-6)
    batch_seconds = s.batch_size * item_seconds
    budget = min(s.run_budget, s.run_interval)
    slots = s.concurrency * max(1.0, budget / batch_seconds)
    batches_per_run = slots / max(1, s.companies)
    per_minute = batches_per_run * s.batch_size * 60.0 / max(s.run_interval, 1.0)
    per_minute = min(per_minute, 60.0 / item_seconds)
    if s.pace_per_minute is not None:
        per_minute = min(per_minute, s.pace_per_minute)
    return per_minute


def seconds_left(remaining, schedule):
    """Estimated seconds until `remaining` items are processed (0 when none are left)."""
    if remaining <= 0:
        return 0
    return round(remaining * 60.0 / items_per_minute(schedule))


def items_until_done(remaining, others, batch_size):
    """Items the company processes until a job with `remaining` items is done, while its
    other active jobs (`others`: their remaining items) take turns with it, one batch
    each: every other job gets as many batches as the job still needs, or fewer if it
    ends sooner. A batch slot counts whole (the pace is spent in batches), so a job of
    one item ahead costs one slot, as the engine serves it."""
    if remaining <= 0:
        return 0
    batches = -(-remaining // batch_size)
    shared = sum(
        min(-(-other // batch_size), batches) * batch_size for other in others if other > 0
    )
    return remaining + shared


def batch_seconds(schedule):
    """Seconds one batch slot of a company lasts on this schedule (its share of the runs,
    its pace)."""
    return schedule.batch_size * 60.0 / items_per_minute(schedule)


def schedule_for(kind, *, run_interval=None, companies=1, seconds_per_item=None):
    """The kind's Schedule from the settings and what was measured (None: not yet)."""
    rate = kind.company_rate
    return Schedule(
        pace_per_minute=None if rate is None else rate.count * 60.0 / rate.period,
        batch_size=kind.default_batch_size,
        run_interval=run_interval or CRON_INTERVAL,
        run_budget=float(conf.get("MAX_SECONDS")),
        concurrency=kind.default_concurrency,
        companies=max(1, companies),
        seconds_per_item=seconds_per_item or DEFAULT_SECONDS_PER_ITEM,
    )


def seconds_per_item(rows, kind_name, now, hours=MEASURED_HOURS):
    """Measured wall-clock seconds per attempt of the kind's batches over the last
    `hours` hours (None before any batch): the pace of the provider, lanes included.
    `rows` are the company's hourly activity (bulkjobs.web.charts.read_activity)."""
    since = hour_start(now) - timedelta(hours=hours)
    attempts = busy = 0
    for name, hour, _processed, _failed, tries, seconds in rows:
        if name == kind_name and hour >= since:
            attempts += tries
            busy += seconds
    return busy / attempts if attempts else None


def processor_runs():
    """{kind name: ProcessorRun}: what each kind's last run recorded (one query): the run
    interval and companies with work behind schedules(), the last start behind the
    dashboard's health line."""
    return {run.kind: run for run in ProcessorRun.objects.all()}


def schedules(company, runs, now, kinds):
    """{kind name: Schedule} for the given kinds (company: a Company or its id): the
    measured run interval and number of companies with work, both as the last run
    recorded them (bulkjobs.engine.note_run_finished), and the company's measured time
    per item (one query for the activity, however many kinds and other tenants' jobs).

    The companies are counted by the processor once per run, not here: counting every
    tenant's active jobs on each poll of each viewer cost in proportion to the whole
    table, and the count only moves when runs serve jobs anyway."""
    rows = read_activity(company, now, days=1) if kinds else []
    result = {}
    for kind in kinds:
        run = runs.get(kind.name)
        result[kind.name] = schedule_for(
            kind,
            run_interval=run.interval_seconds if run else None,
            companies=(run.companies_with_work if run else None) or 1,
            seconds_per_item=seconds_per_item(rows, kind.name, now),
        )
    return result
