"""Exit 0 when every processor ran recently, 1 otherwise (3 when the database schema is
behind the code, bulkjobs/ops/schema.py): for cron-based monitors.

    */5 * * * * cd /path/to/app && .venv/bin/python manage.py check_processors && curl -fsS https://hc-ping.com/UUID

It also sends the operators' alert for a processor that stopped (once per outage, see
bulkjobs/ops/alerts.py), so a platform whose only other processor is the stopped one still
hears of it, and any job alert a processing run did not get to send (a run killed right
after finishing a job; runs with nothing to do check no jobs, to stay cheap).
"""

from django.conf import settings
from django.core.management.base import CommandError

from bulkjobs import conf
from bulkjobs.engine import clock
from bulkjobs.kinds import all_kinds
from bulkjobs.ops import alerts, health
from bulkjobs.ops.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Check that the processing commands ran recently and the database answers; exit 0 "
        "if so, 1 (with the reason) if not. For cron-based monitors (healthchecks.io)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--minutes",
            type=float,
            help="A processor that has not started a run for this long fails the check "
            f"(default {conf.get('PROCESSOR_STALE_MINUTES'):g}, "
            "BULKJOBS_PROCESSOR_STALE_MINUTES).",
        )
        parser.add_argument(
            "--kind",
            action="append",
            choices=sorted(kind.name for kind in all_kinds()),
            help="Only check this processor (repeat for several; default: all).",
        )
        parser.add_argument(
            "--no-alerts",
            action="store_true",
            help="Only check; send no alerts (a stopped processor, job alerts not yet sent).",
        )

    def handle(self, *args, **options):
        if options["minutes"] is not None and options["minutes"] <= 0:
            raise CommandError("--minutes must be positive.")
        result = health.check(kinds=options["kind"], stale_minutes=options["minutes"])
        if result.database and settings.BULKJOBS_ALERTS and not options["no_alerts"]:
            now = clock.now()
            alerts.check_processors(now, options["minutes"])
            for kind in all_kinds():
                alerts.check_jobs(kind, now)
        for warning in result.warnings:
            self.stderr.write("WARNING: " + warning)
        if not result.ok:
            self.stderr.write("FAIL: " + " ".join(result.problems))
            raise SystemExit(1)
        ages = ", ".join(f"{kind} {age} s ago" for kind, age in result.ages.items())
        self.stdout.write(f"OK: last runs started {ages}.")
