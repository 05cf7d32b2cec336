"""Are the processors running, does the database answer, and is its schema up to date? For
/healthz and check_processors.

The answer holds nothing about any company: the status, whether the database answered,
whether its schema has every migration of this release (bulkjobs/ops/schema.py), and for
each kind of processor the age in seconds of its last run's start (by the
database's clock) and how far that run's host clock was off the database's. A kind that
has never run counts as a failure (its cron line or worker is missing), unless the
caller only asks about other kinds; a skewed host clock is a warning, not a failure (the
engine goes by the database's clock).
"""

from dataclasses import dataclass, field

from django.db import DatabaseError
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .. import conf
from ..engine import clock, outage
from ..kinds import all_kinds
from ..models import ProcessorRun
from . import schema

#: What /healthz says of a database that refuses new connections because it is full.
DATABASE_FULL = "full (too many connections)"


@dataclass
class Health:
    #: Seconds without a run after which a processor counts as stopped.
    limit: float
    database: bool = True
    #: The database refused the connection because it is full (max_connections reached).
    database_full: bool = False
    #: the migrations of this release the database has not had ("app.name")
    unapplied: list = field(default_factory=list)
    #: kind -> seconds since its last run started (None: never ran)
    ages: dict = field(default_factory=dict)
    #: kind -> seconds its last run's host clock was behind the database's (negative: ahead)
    skews: dict = field(default_factory=dict)
    #: One sentence per problem, for people (a command's output, a log line).
    problems: list = field(default_factory=list)
    #: The same for what needs a look but does not fail the check.
    warnings: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def as_json(self):
        """The public answer of /healthz: status and ages only."""
        answer = {
            "status": "ok" if self.ok else "fail",
            "database": self.database_state,
            "schema": ("behind" if self.unapplied else "ok") if self.database else "unknown",
            "processors": {
                kind: {
                    "last_run_age_seconds": age,
                    "stale": age is None or age > self.limit,
                    "clock_skew_seconds": (round(self.skews[kind]) if kind in self.skews else None),
                }
                for kind, age in self.ages.items()
            },
        }
        if self.warnings:
            answer["warnings"] = self.warnings
        return answer

    @property
    def database_state(self):
        if self.database:
            return "ok"
        return DATABASE_FULL if self.database_full else "unreachable"


def check(kinds=None, stale_minutes=None, now=None):
    """The health of the given processor kinds (default: every registered kind)."""
    limit = 60 * (conf.get("PROCESSOR_STALE_MINUTES") if stale_minutes is None else stale_minutes)
    health = Health(limit=limit)
    kinds = sorted(kinds or (kind.name for kind in all_kinds()))
    try:
        health.unapplied = schema.unapplied_migrations()
        if health.unapplied:
            health.problems.append(schema.describe(health.unapplied))
        rows = ProcessorRun.objects.filter(kind__in=kinds).values_list(
            "kind", "last_started_at", "clock_skew_seconds"
        )
        runs = {kind: (started, skew) for kind, started, skew in rows}
        if now is None:
            clock.sync()  # the runs' times are the database's: so is the age
            now = clock.now()
    except DatabaseError as exc:
        if health.unapplied and schema.is_missing_schema(exc):
            return health  # the processors' table is behind too: already said
        health.database = False
        if outage.is_server_full(exc):
            health.database_full = True
            health.problems.append(
                "The database server refuses new connections: it is full (too many "
                "connections; max_connections reached)."
            )
        else:
            health.problems.append(f"The database did not answer ({type(exc).__name__}).")
        return health
    for kind in kinds:
        started, skew = runs.get(kind, (None, 0.0))
        if started is None:
            health.ages[kind] = None
            health.problems.append(
                f"The {kind} processor has never run: add its cron line (crontab.example) "
                "or start its worker."
            )
            continue
        age = max(0, int((now - started).total_seconds()))
        health.ages[kind] = age
        health.skews[kind] = skew
        if clock.is_skewed(skew):
            health.warnings.append(
                f"The host of the last {kind} run has a clock {clock.describe_skew(skew)} "
                "the database's: set its time (NTP). The engine goes by the database's."
            )
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
    database answered and its schema is up to date, else 503 (a database that is full
    too); no sign-in, and nothing but status and ages."""
    health = check()
    return JsonResponse(health.as_json(), status=200 if health.ok else 503)
