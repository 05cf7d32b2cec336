"""What a company's waiting jobs wait for, and until when: an honest queue, worked out when
a page is shown from what the database holds (the engine writes nothing for it).

A job waits while it is active and no run holds it. A company's active jobs of a kind take
turns one batch each (bulkjobs.engine.claim.turn_order()), so a job waits for, in order:
- a pause: its provider refused it (the job's own reason says so, "Paused since ...");
  a pause a person asked for will be one more kind of pause (see paused_wait());
- its items' backoff, when none is due now (the claim passes it over until then);
- the jobs ahead of it in turn, one batch slot each ("Behind #8 “Newsletter”");
- the company's next batch slot: the batch of another job of the company in flight or
  just served, the company's pace (its bucket), a provider's rate limit (the kind's
  shared buckets), or simply the next processor run;
- background processing itself, when no run has started for a while.

A Wait carries a code, the job it is behind, when its next batch is expected and its
text, in the active language with times in the active time zone (the company's on its
pages), the zone named. The estimate uses the same schedule as the time left
(bulkjobs.web.eta): a batch slot of the company lasts eta.batch_seconds().

Queries, however many jobs a page shows: the company's active jobs of the kind in turn
order (one, at most QUEUE_LENGTH of them), the rate buckets that gate its next batch (one,
none when no limit is set) and, only if a started job is between batches, whether such
jobs have an item due and when their next retry is (one, an EXISTS and a MIN per job,
through the items' (job, status, id) index).
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import (
    BooleanField,
    Case,
    Count,
    DateTimeField,
    Exists,
    Max,
    OuterRef,
    Subquery,
    Sum,
    Value,
    When,
)
from django.utils.text import capfirst
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cards.locale import format_zoned

from .. import reasons
from ..engine.claim import turn_order
from ..models import RateBucket, Status
from . import eta

#: Active jobs of a company a queue reads (in turn order): a job beyond them is told it
#: waits behind at least that many.
QUEUE_LENGTH = 200
#: A processor that has not started a run for this long is not coming by itself (the
#: dashboard's health line says the same: bulkjobs.web.dashboard.OVERDUE_AFTER).
OVERDUE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Wait:
    #: "behind", "pace", "limit", "run", "retry" or "stopped"
    code: str
    text: str
    #: when the job's next batch (its first, if it has not started) is expected
    starts_at: datetime | None = None
    #: the job it waits behind, if it is another job's turn first
    behind: object = None


def job_name(kind, job):
    """How a waiting job names the job it is behind: "#8 “Newsletter Dezember”" (the
    quotation marks of the language), or "Email job #8" without a title."""
    from .rows import job_title

    title = job_title(kind, job)
    if title:
        return _("#%(id)s “%(title)s”") % {"id": job.pk, "title": title}
    return _("%(kind)s #%(id)s") % {"kind": capfirst(kind.job_noun), "id": job.pk}


def paused_wait(job):
    """The hook for pauses: a paused job says why itself ("Paused since ...", its reason,
    bulkjobs.web.rows.pause_text), so it gets no Wait of its own. A pause a person asks
    for is to be recognised here as well, so that it neither waits in turn nor counts as
    a job ahead of others."""
    return job.is_paused


class CompanyQueue:
    """A company's active jobs of one kind in turn order, and when its next batch slot
    opens. wait(job) and seconds_left(job) answer for any job of the company."""

    def __init__(self, kind, company_id, jobs, now, schedule, run=None, buckets=None, retries=None):
        self.kind = kind
        self.company_id = company_id
        #: the active jobs, in turn order
        self.jobs = jobs
        self.now = now
        self.schedule = schedule
        self.run = run
        #: {bucket key: tat} of the company's pace and the kind's shared limits
        self.buckets = buckets or {}
        #: {job pk: (has work now, next retry)} of jobs between batches
        self.retries = retries or {}
        self.slot_at, self.slot_code, self.slot_rate = self._next_slot()

    # --- the company's next batch slot ---------------------------------------------

    def _next_slot(self):
        """(when, why, rate): the earliest time the company can be served, and what holds
        it until then: "run" (the next processor run), "pace" or "limit" (a bucket
        without a token), or "now"."""
        now = self.now.timestamp()
        slots = [(now, "now", None)]
        run = self.run
        if run is not None and run.last_started_at and run.interval_seconds:
            slots.append((run.last_started_at.timestamp() + run.interval_seconds, "run", None))
        pace = self.kind.company_rate
        limits = [(self.kind.company_bucket(self.company_id), pace, "pace")] if pace else []
        limits += [(key, rate, "limit") for key, rate, _what in self.kind.batch_rate_limits()]
        for key, rate, code in limits:
            tat = self.buckets.get(key)
            if rate is not None and tat is not None:
                # The bucket holds a token again once its time is within a period of now.
                slots.append((tat - rate.period + rate.interval, code, rate))
        at, code, rate = max(slots, key=lambda slot: slot[0])
        return datetime.fromtimestamp(at, tz=UTC), code, rate

    @property
    def stopped(self):
        """No processor run for a while (or never): nothing moves until one runs."""
        run = self.run
        return (
            run is None
            or run.last_started_at is None
            or (self.now - run.last_started_at > OVERDUE_AFTER)
        )

    # --- one job ---------------------------------------------------------------------

    def _find(self, job):
        return next((j for j in self.jobs if j.pk == job.pk), None)

    def _in_flight(self, job):
        return job.claim_token is not None and job.status == Status.PROCESSING

    def _backing_off(self, job):
        """The job's next retry, if it is between batches with no item due now."""
        work_now, next_retry = self.retries.get(job.pk, (True, None))
        return None if work_now else next_retry

    def _ahead(self, job):
        """The jobs whose batch comes before the job's next one: those before it in turn,
        except the one in flight (its batch is under way) and those passed over for now
        (paused, or waiting for their items' backoff)."""
        ahead = []
        for other in self.jobs:
            if other.pk == job.pk:
                return ahead
            if self._in_flight(other) or paused_wait(other) or self._backing_off(other):
                continue
            ahead.append(other)
        # Not among the first QUEUE_LENGTH: at least all of them are ahead.
        return ahead

    def _last_served(self, job):
        """Another job of the company whose batch holds the current slot: the one in
        flight, else the one last served since the last run started (its batch spent the
        run's pace)."""
        others = [other for other in self.jobs if other.pk != job.pk]
        in_flight = next((other for other in others if self._in_flight(other)), None)
        if in_flight is not None:
            return in_flight
        since = self.run.last_started_at if self.run is not None else None
        served = [o for o in others if o.claimed_at is not None and since and o.claimed_at >= since]
        return max(served, key=lambda other: other.claimed_at, default=None)

    def wait(self, job):
        """What the job waits for (a Wait), or None: it is being processed, finished or
        paused (its reason says why)."""
        if job.status not in (Status.PENDING, Status.PROCESSING) or paused_wait(job):
            return None
        job = self._find(job) or job
        if self._in_flight(job):
            return None
        started = job.status == Status.PROCESSING
        retry_at = self._backing_off(job)
        if retry_at is not None:
            return Wait(
                "retry",
                self._sentence(_("Waiting to retry"), self._when(retry_at, "retry")),
                retry_at,
            )
        if self.stopped and self.run is not None:
            return Wait("stopped", _("Waiting for background processing to run again."))
        ahead = self._ahead(job)
        starts_at = self.slot_at + timedelta(seconds=len(ahead) * eta.batch_seconds(self.schedule))
        when = self._when(starts_at, "next" if started else "start")
        if ahead:
            behind = ahead[-1]
            others = len(ahead) - 1
            if others:
                what = ngettext(
                    "Behind %(job)s and %(count)s other job",
                    "Behind %(job)s and %(count)s other jobs",
                    others,
                ) % {"job": job_name(self.kind, behind), "count": others}
            else:
                what = _("Behind %(job)s") % {"job": job_name(self.kind, behind)}
            return Wait("behind", self._sentence(what, when), starts_at, behind)
        if self.slot_code == "limit":
            what = _("Waiting for the provider's rate limit (%(rate)s)") % {
                "rate": reasons.rate_words(self.slot_rate)
            }
            return Wait("limit", self._sentence(what, when), starts_at)
        behind = self._last_served(job)
        if behind is not None:
            # Its batch holds the company's current slot (in flight, or it spent the pace
            # of this run): this job has the next one.
            what = _("Behind %(job)s") % {"job": job_name(self.kind, behind)}
            return Wait("behind", self._sentence(what, when), starts_at, behind)
        if self.slot_code == "pace":
            what = _("Waiting for the company's pace (%(rate)s)") % {
                "rate": reasons.rate_words(self.slot_rate)
            }
            return Wait("pace", self._sentence(what, when), starts_at)
        if self.run is None:
            text = (
                _("Next batch on the next processor run.")
                if started
                else _("Starts on the next processor run.")
            )
            return Wait("run", text)
        return Wait("run", self._sentence(_("Next in turn"), when), starts_at)

    def seconds_left(self, job):
        """Estimated seconds until a started job is done, taking turns with the company's
        other active jobs (eta.items_until_done); None for a job not started or paused."""
        if job.status != Status.PROCESSING or not job.total_items or paused_wait(job):
            return None
        remaining = job.total_items - job.processed_items
        others = [
            other.total_items - other.processed_items
            for other in self.jobs
            if other.pk != job.pk and not paused_wait(other)
        ]
        items = eta.items_until_done(remaining, others, self.schedule.batch_size)
        return eta.seconds_left(items, self.schedule)

    # --- words -------------------------------------------------------------------------

    def _when(self, at, what):
        """ "starts in about 3 min (around 14:05 CET)", "next batch in ...", "next attempt
        in ..."; the date is added when it is another day."""
        from .rows import format_duration

        seconds = max(0, (at - self.now).total_seconds())
        local = localtime(at)
        same_day = local.date() == localtime(self.now).date()
        values = {
            "duration": format_duration(math.ceil(seconds)),
            "time": format_zoned(local, "H:i" if same_day else "Y-m-d H:i"),
        }
        if seconds < 60:
            # Sentences of their own: "in less than a minute" is not "less than a minute"
            # after "in" in every language (German: "in weniger als einer Minute").
            texts = {
                "start": _("starts in less than a minute (around %(time)s)"),
                "retry": _("next attempt in less than a minute (around %(time)s)"),
                "next": _("next batch in less than a minute (around %(time)s)"),
            }
        else:
            texts = {
                "start": _("starts in %(duration)s (around %(time)s)"),
                "retry": _("next attempt in %(duration)s (around %(time)s)"),
                "next": _("next batch in %(duration)s (around %(time)s)"),
            }
        return texts[what] % values

    @staticmethod
    def _sentence(what, when):
        return _("%(what)s: %(when)s.") % {"what": what, "when": when}


def fingerprint(kind, company_id):
    """Values of the company's active jobs of the kind whose change moves its queue (a
    job's poll adds them to its ETag): one aggregate through the active-jobs index. A
    batch moves claimed_at (which also follows a bucket spent or a retry scheduled by
    it), a new, finished or cancelled job the count and the sum of ids, a pause
    paused_at."""
    return tuple(
        kind.job_model.objects.active()
        .filter(company_id=company_id)
        .aggregate(
            count=Count("id"),
            ids=Sum("id"),
            claimed=Max("claimed_at"),
            paused=Max("paused_at"),
            claims=Count("claim_token"),
        )
        .values()
    )


def load(kind, company_id, now, schedule, run=None):
    """The company's CompanyQueue for the kind (the queries are listed in the module's
    docstring). `schedule` (eta.Schedule) and `run` (the kind's ProcessorRun, or None)
    are what the page read already for the time left and the health line."""
    from .rows import with_titles

    jobs = list(
        with_titles(kind, kind.job_model.objects.active().filter(company_id=company_id)).order_by(
            *turn_order()
        )[:QUEUE_LENGTH]
    )
    keys = []
    if kind.company_rate is not None:
        keys.append(kind.company_bucket(company_id))
    keys += [key for key, _rate, _what in kind.batch_rate_limits()]
    buckets = (
        dict(RateBucket.objects.filter(key__in=keys).values_list("key", "tat")) if keys else {}
    )
    between = [
        job.pk
        for job in jobs
        if job.status == Status.PROCESSING and job.claim_token is None and job.paused_at is None
    ]
    retries = {}
    if between:
        items = kind.item_model.objects.filter(job_id=OuterRef("pk"))
        work_now = Exists(items.filter(status=Status.PROCESSING)) | Exists(items.due(now))
        next_retry = items.waiting(now).order_by("next_attempt_at").values("next_attempt_at")[:1]
        rows = (
            kind.job_model.objects.filter(company_id=company_id, pk__in=between)
            .order_by()
            .annotate(
                work_now=Case(
                    When(work_now, then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                ),
                # Only looked for when nothing is due: it reads the job's pending items.
                next_retry=Case(
                    When(work_now, then=Value(None)),
                    default=Subquery(next_retry),
                    output_field=DateTimeField(),
                ),
            )
            .values_list("pk", "work_now", "next_retry")
        )
        retries = {pk: (bool(work), retry) for pk, work, retry in rows}
    return CompanyQueue(kind, company_id, jobs, now, schedule, run, buckets, retries)


def wait_of_new_job(kind, job, now=None):
    """What a job just created waits for, in a sentence for the message after creating
    it ("Behind #8 “Newsletter”: starts in about 1 min (around 14:05 CET)."); the same
    queue as its page shows."""
    from django.utils import timezone

    now = now or timezone.now()
    runs = eta.processor_runs()
    schedule = eta.schedules(job.company_id, runs, now, [kind])[kind.name]
    wait = load(kind, job.company_id, now, schedule, runs.get(kind.name)).wait(job)
    return wait.text if wait is not None else _("It starts on the next processor run.")
