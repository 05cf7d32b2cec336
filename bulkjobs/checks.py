"""System checks for the engine's settings (`manage.py check`, `check --deploy`), and for
the database's replication (`check --database default`).

The processing commands skip the system checks (an expired wallet certificate must not
stop email delivery), so conf.validate(), which every run calls, refuses the same errors;
these checks report them at deploy time, with the warnings too.
"""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from . import conf
from .models.sql import database_clock


@checks.register("bulkjobs")
def check_engine_settings(app_configs, **kwargs):
    errors = []
    for name in conf.DEFAULTS:
        try:
            conf.get(name)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="bulkjobs.E002"))
    if errors:
        # The combinations are judged on valid values only.
        return errors
    level = {True: checks.Error, False: checks.Warning}
    return [
        level[problem.error](problem.message, hint=problem.hint, id=problem.id)
        for problem in conf.combination_problems()
    ]


@checks.register(checks.Tags.database)
def check_replication(app_configs, databases=None, **kwargs):
    """Email's at-most-once guarantee across a failover needs each item's mark on the
    standby before its email leaves: PostgreSQL standbys replicated asynchronously do not
    give that. Asks the database, so it runs with `check --database default` (as Django's
    own database checks do)."""
    if not databases or "default" not in databases:
        return []
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return []
    try:
        _time, _identity, durable = database_clock(connection)
    except DatabaseError:
        return []  # the database checks of Django report an unreachable database
    if durable is not False:
        return []
    return [
        checks.Warning(
            "PostgreSQL has standbys replicated asynchronously: after a failover to one of "
            "them, emails sent in the replication lag may be sent again.",
            hint=(
                "Make at least one standby synchronous (synchronous_standby_names, with "
                "synchronous_commit on); see 'Delivery guarantees' in docs/lifecycle.md."
            ),
            id="bulkjobs.W003",
        )
    ]
