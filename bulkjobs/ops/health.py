"""Are the processors running, does the database answer, and is its schema up to date? For
/healthz and check_processors.

The answer holds nothing about any company: the status, whether the database answered,
whether its schema has every migration of this release (bulkjobs/ops/schema.py), and
for each kind of processor the age in seconds of its last run's start. A kind that has
never run counts as a failure (its cron line or worker is missing), unless the caller
only asks about other kinds.
"""

from dataclasses import dataclass, field

from django.db import DatabaseError
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .. import conf
from ..kinds import all_kinds
from ..models import ProcessorRun
from . import schema


@dataclass
class Health:
    #: Seconds without a run after which a processor counts as stopped.
    limit: float
    database: bool = True
    #: the migrations of this release the database has not had ("app.name")
    unapplied: list = field(default_factory=list)
    #: kind -> seconds since its last run started (None: never ran)
    ages: dict = field(default_factory=dict)
    #: One sentence per problem, for people (a command's output, a log line).
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def as_json(self):
        """The public answer of /healthz: status and ages only."""
        return {
            "status": "ok" if self.ok else "fail",
            "database": "ok" if self.database else "unreachable",
            "schema": ("behind" if self.unapplied else "ok") if self.database else "unknown",
            "processors": {
                kind: {"last_run_age_seconds": age, "stale": age is None or age > self.limit}
                for kind, age in self.ages.items()
            },
        }


def check(kinds=None, stale_minutes=None, now=None):
    """The health of the given processor kinds (default: every registered kind)."""
    limit = 60 * (conf.get("PROCESSOR_STALE_MINUTES") if stale_minutes is None else stale_minutes)
    health = Health(limit=limit)
    kinds = sorted(kinds or (kind.name for kind in all_kinds()))
    try:
        health.unapplied = schema.unapplied_migrations()
        if health.unapplied:
            health.problems.append(schema.describe(health.unapplied))
        runs = dict(
            ProcessorRun.objects.filter(kind__in=kinds).values_list("kind", "last_started_at")
        )
    except DatabaseError as exc:
        if health.unapplied and schema.is_missing_schema(exc):
            return health  # the processors' table is behind too: already said
        health.database = False
        health.problems.append(f"The database did not answer ({type(exc).__name__}).")
        return health
    now = now or timezone.now()
    for kind in kinds:
        started = runs.get(kind)
        if started is None:
            health.ages[kind] = None
            health.problems.append(
                f"The {kind} processor has never run: add its cron line (crontab.example) "
                "or start its worker."
            )
            continue
        age = max(0, int((now - started).total_seconds()))
        health.ages[kind] = age
        if age > limit:
            health.problems.append(
                f"The {kind} processor has not run for {age // 60} minutes (limit "
                f"{limit / 60:g}): check cron or its workers, and the log file."
            )
    return health


@never_cache
@require_safe
def healthz_view(request):
    """GET /healthz for uptime monitors: 200 when every processor ran recently, the
    database answered and its schema is up to date, else 503; no sign-in, and nothing
    but status and ages."""
    health = check()
    return JsonResponse(health.as_json(), status=200 if health.ok else 503)
