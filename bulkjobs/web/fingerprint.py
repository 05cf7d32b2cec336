"""The dashboard's change fingerprint: per kind, the values whose change means the page
shows something new, read in two queries however many jobs there are.

The JSON poll hashes them into its ETag (bulkjobs.web.dashboard.etag_for) and answers
304 without any page query while they stay the same. Finished jobs are covered by the
company's JobCount row (bulkjobs.web.jobcounts); pending, processing and paused jobs by
one aggregate of the open jobs of every kind, whose SQL the ORM compiles once per database.
"""

import functools

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Max, Q, Sum, Value

from ..kinds import get_kind
from ..models import OPEN_STATUSES, Status
from .jobcounts import job_counts

#: What the fingerprint aggregates over a company's active jobs of one kind.
ACTIVE_AGGREGATES = {
    "active": Count("id"),
    "active_ids": Sum("id"),
    "processing": Count("id", filter=Q(status=Status.PROCESSING)),
    # A pause or resume of a job that was pending changes nothing else here.
    "paused_by_person": Count("id", filter=Q(status=Status.PAUSED)),
    "processed": Sum("succeeded_items") + Sum("failed_items") + Sum("cancelled_items"),
    "total": Sum("total_items"),
    "last_processed": Max("last_processed_at"),
    "started": Max("started_at"),
    "claimed": Max("claimed_at"),
    "paused": Max("paused_at"),
}


class _CompanyId(Value):
    """The company's id in SQL compiled ahead of time: the ORM writes it as a placeholder
    ("company_id" = %s, as for any value) with this expression in its parameters, and
    each poll puts its company's id in that place."""

    def __init__(self):
        super().__init__(None)

    def as_sql(self, compiler, connection):
        return "%s", [self]


@functools.lru_cache(maxsize=16)
def _active_aggregates_sql(alias, kind_names):
    """The SQL of every kind's ACTIVE_AGGREGATES in one UNION ALL and its parameters (the
    company's id a _CompanyId), built by the ORM once per database: compiling it per poll
    cost more than running it."""
    parts, params = [], []
    for name in kind_names:
        query = (
            get_kind(name)
            .job_model.objects.filter(company_id=_CompanyId(), status__in=OPEN_STATUSES)
            .order_by()
            .values("company_id")
            .annotate(kind=Value(name), **ACTIVE_AGGREGATES)
            .query
        )
        sql, kind_params = query.get_compiler(using=alias).as_sql()
        # MariaDB needs each grouped SELECT of a UNION in parentheses; SQLite allows none.
        parts.append(
            f"({sql})" if connections[alias].features.supports_parentheses_in_compound else sql
        )
        params.extend(kind_params)
    return " UNION ALL ".join(parts), tuple(params)


def fingerprints(company, kinds, using=DEFAULT_DB_ALIAS):
    """{kind name: fingerprint} of the given kinds: values whose change means the dashboard
    shows something new. Two queries, however many jobs: the company's JobCount rows and
    one aggregate.

    Only pending, processing and paused jobs change, so only they are aggregated in detail
    (through the active-jobs index); finished jobs are covered by the company's JobCount
    row (bulkjobs.web.jobcounts): its number of jobs and a version that moves when a job is
    created or deleted, read without counting 100,000 rows. Progress moves the active
    jobs' counters and last_processed_at; start, finish, cancel, expiry and retry change
    the set of active jobs (their count and id sum); claimed_at moves with every batch,
    which also covers a "paused" reason written by a batch that made no progress;
    paused_at marks when a pause begins or ends.
    """
    counts = job_counts(company.pk, kinds)
    sql, params = _active_aggregates_sql(using, tuple(k.name for k in kinds))
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [company.pk if isinstance(p, _CompanyId) else p for p in params])
        columns = [column[0] for column in cursor.description]
        rows = {
            row["kind"]: row
            for row in (dict(zip(columns, r, strict=True)) for r in cursor.fetchall())
        }
    result = {}
    for kind in kinds:
        active = rows.get(kind.name) or dict.fromkeys(ACTIVE_AGGREGATES)
        active = {name: active[name] for name in ACTIVE_AGGREGATES}
        active["active"] = active["active"] or 0
        row = counts[kind.name]
        result[kind.name] = {"count": max(0, row.jobs), "version": row.version, **active}
    return result
