"""Claiming: which company is served next, taking one of its jobs, and the fenced writes
a run makes through its claim.

A claim is a random token written on the job row by a compare-and-set UPDATE; the
database's unique index on `claimed_company` allows one claimed job per company. Every
later write of the run (an item's mark or outcome, a heartbeat, the job's counters and
end) is conditional on that token, so a run that lost its claim changes nothing more.
"""

import secrets
from dataclasses import dataclass

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q

from ..models import InterruptedPolicy, Status
from . import clock, locks

#: How many of a company's active jobs a claim looks at, in turn order (turn_order()),
#: for one with work due now (the next in turn may wait for its items' backoff).
CLAIM_LOOKAHEAD = 10


def turn_order():
    """The order in which a company's active jobs take turns, batch by batch.

    1. The job carrying a claim (at most one per company, by the unique index on
       claimed_company): while a run holds it and it is `processing`, nobody else may
       claim for the company; a `pending` one carrying a claim is an operator's reset,
       taken first (see claim_job()).
    2. Jobs never served (no claimed_at), oldest first: a new job gets the company's next
       batch, so a small job is never stuck behind a long one.
    3. The others, least recently served first (claimed_at, which every claim sets and
       a release keeps): the company's running jobs take turns, one batch each.
    Ties go to the older job (created_at, then id).
    """
    return (
        F("claimed_company").asc(nulls_last=True),
        F("claimed_at").asc(nulls_first=True),
        "created_at",
        "id",
    )


@dataclass
class Claim:
    """A run's hold on one job: every write through it is fenced by its token."""

    kind: object
    job: object
    token: str

    @property
    def jobs(self):
        return self.kind.job_model.objects

    @property
    def items(self):
        return self.kind.item_model.objects

    def mark(self, item_pk):
        return self.items.mark(item_pk, self.job.pk, self.token)

    def give_back(self, item_pk):
        return self.items.give_back(item_pk, self.job.pk, self.token)

    def record(self, item_pk, changes, now=None):
        return self.items.record(item_pk, self.job.pk, self.token, changes, now)

    def record_and_mark(self, item_pk, changes, now, next_pk):
        return self.items.record_and_mark(item_pk, self.job.pk, self.token, changes, now, next_pk)

    def record_and_mark_many(self, records, marks):
        return self.items.record_and_mark_many(self.job.pk, self.token, records, marks)

    def heartbeat(self):
        """Refresh the claim; False if the run no longer holds a running job."""
        return self.jobs.heartbeat(self.job.pk, self.token, clock.now())

    def release(self):
        return self.jobs.release(self.job.pk, self.token)

    def status(self):
        """The job's status now, as the database has it (None if it is gone)."""
        return self.jobs.filter(pk=self.job.pk).values_list("status", flat=True).first()


def new_token():
    """A claim token: random, so no two runs on any host ever hold the same one."""
    return secrets.token_hex(16)


def companies_in_fair_order(kind, company_ids=None):
    """Companies with active jobs and no running claim, least recently served first.

    "Served" is the latest claim of any of the company's active jobs; never-served
    companies come first, then by their oldest active job. A claim left on a job an
    operator reset to pending does not hold the company back (see claim_job()).
    """
    rows = kind.job_model.objects.active()
    if company_ids:
        rows = rows.filter(company_id__in=company_ids)
    rows = (
        rows.values("company_id")
        .annotate(
            last_served=Max("claimed_at"),
            oldest=Min("id"),
            claims=Count("claim_token", filter=Q(status=Status.PROCESSING)),
        )
        .filter(claims=0)
        .order_by(F("last_served").asc(nulls_first=True), "oldest")
    )
    return [row["company_id"] for row in rows]


def claim_next_job(kind, company_id, token=None, owner=None):
    """Claim a job of the company and settle what a dead run left in it; None if the
    company is held by another run or has nothing to do now."""
    claim = claim_job(kind, company_id, token, owner)
    if claim is not None:
        settle_interrupted(claim)
    return claim


def claim_job(kind, company_id, token=None, owner=None):
    """Claim the company's next job in turn (turn_order()) that has work now, with
    `token` (a new one if not given), for the worker `owner` (a Worker's id, or None);
    None if there is none.

    "Work now": an item due, an item left `processing` by a dead run, or nothing active
    left (the job is to be finished). A job whose items all wait for their backoff is
    passed over, so it does not hold up the company's other jobs, and keeps its place in
    turn for when they are due; the database's unique index still allows one claimed
    job per company. A pending job still carrying a dead run's claim (an operator's
    reset) is the company's claimed job, so it is taken first: the engine never leaves a
    claimed job pending, and a run still holding it stops at its next fenced write, which
    requires status `processing`.

    Two bounded queries: the next CLAIM_LOOKAHEAD jobs in turn (plain columns of the
    company's active jobs, through the active-jobs index), then which of them have work
    now (three EXISTS per job: an item processing, due, waiting; through the items'
    (job, status, id) index).
    """
    now = clock.now()
    jobs = kind.job_model.objects
    # All active jobs, claimed ones included (the claimed one comes first): a company
    # whose job is held by a live run is left alone.
    candidates = list(
        jobs.active()
        .filter(company_id=company_id)
        .order_by(*turn_order())
        .values_list("pk", "status", "claim_token")[:CLAIM_LOOKAHEAD]
    )
    if not candidates:
        return None
    first_pk, first_status, first_token = candidates[0]
    if first_token and first_status == Status.PROCESSING:
        return None
    if first_token:
        job_pk, status, previous_token = first_pk, first_status, first_token
    else:
        items = kind.item_model.objects.filter(job_id=OuterRef("pk"))
        has_work = (
            Exists(items.filter(status=Status.PROCESSING))
            | Exists(items.due(now))
            | ~Exists(items.waiting(now))
        )
        pks = [pk for pk, _status, _token in candidates]
        with_work = set(jobs.filter(has_work, pk__in=pks).values_list("pk", flat=True))
        turn = next((c for c in candidates if c[0] in with_work), None)
        if turn is None:
            return None
        job_pk, status, previous_token = turn
    token = token or new_token()
    try:
        with transaction.atomic():
            won = jobs.claim(
                job_pk,
                status=status,
                previous_token=previous_token,
                token=token,
                now=now,
                owner=owner,
            )
    except IntegrityError:
        # The unique index on claimed_company: another run holds another job of this
        # company right now.
        won = False
    except DatabaseError as exc:
        if not locks.is_timeout(exc):
            raise
        # Another transaction holds the job's row: the company waits for the next run,
        # the others are served meanwhile.
        locks.report_locked(kind, job_pk, exc, "its company is passed over in this run")
        return None
    if not won:
        return None
    locks.reported.forget((kind.name, job_pk))
    if previous_token:
        kind.logger.warning(
            "Job %s: reset to pending while claimed; the old claim is dropped", job_pk
        )
    return Claim(kind=kind, job=jobs.get(pk=job_pk), token=token)


def settle_interrupted(claim):
    """Settle items a dead run left `processing`, by the kind's policy; fenced by the claim,
    so a run that lost its claim meanwhile changes nothing. Returns the count settled."""
    kind = claim.kind
    count = kind.item_model.objects.settle_interrupted(
        claim.job.pk, claim.token, kind.interrupted_policy, kind.interrupted_reason, clock.now()
    )
    if count:
        verb = (
            "will be redone"
            if kind.interrupted_policy == InterruptedPolicy.REDO
            else "failed, not redone"
        )
        kind.logger.warning("Job %s: %d interrupted item(s) %s", claim.job.pk, count, verb)
    return count
