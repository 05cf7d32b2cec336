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

#: How many of a company's active jobs a claim looks at, oldest first, for one with work
#: due now (the oldest may wait for its items' backoff).
CLAIM_LOOKAHEAD = 10


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
    """Claim the company's oldest active job that has work now, with `token` (a new one
    if not given), for the worker `owner` (a Worker's id, or None); None if there is
    none.

    "Work now": an item due, an item left `processing` by a dead run, or nothing active
    left (the job is to be finished). A job whose items all wait for their backoff is
    passed over, so it does not hold up the company's next job; the database's unique
    index still allows one claimed job per company. A pending job still carrying a dead
    run's claim (an operator's reset) is the company's claimed job, so it is taken first:
    the engine never leaves a claimed job pending, and a run still holding it stops at its
    next fenced write, which requires status `processing`.
    """
    now = clock.now()
    items = kind.item_model.objects.filter(job_id=OuterRef("pk"))
    # All active jobs, claimed ones included: a company whose job is held by a live run
    # is left alone. Looking only at unclaimed jobs would let a run take the company's
    # second job in the instant the first one's batch is released, out of order.
    candidates = list(
        kind.job_model.objects.active()
        .filter(company_id=company_id)
        .annotate(
            # Both EXISTS are served by the items' (job, status, id) index.
            ready=Exists(items.filter(status=Status.PROCESSING)) | Exists(items.due(now)),
            waiting=Exists(items.waiting(now)),
        )
        .order_by("created_at", "id")
        .only("pk", "status", "claim_token", "company_id", "started_at")[:CLAIM_LOOKAHEAD]
    )
    if any(j.claim_token and j.status == Status.PROCESSING for j in candidates):
        return None
    job = next((j for j in candidates if j.claim_token), None)
    if job is None:
        job = next((j for j in candidates if j.ready or not j.waiting), None)
    if job is None:
        return None
    token = token or new_token()
    try:
        with transaction.atomic():
            won = kind.job_model.objects.claim(
                job.pk,
                status=job.status,
                previous_token=job.claim_token,
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
        locks.report_locked(kind, job.pk, exc, "its company is passed over in this run")
        return None
    if not won:
        return None
    locks.reported.forget((kind.name, job.pk))
    if job.claim_token:
        kind.logger.warning(
            "Job %s: reset to pending while claimed; the old claim is dropped", job.pk
        )
    return Claim(kind=kind, job=kind.job_model.objects.get(pk=job.pk), token=token)


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
