"""Delete finished jobs and their items older than the retention period (see bulkjobs/ops/retention.py)."""

from django.core.management.base import CommandError
from django.utils import timezone

from bulkjobs import conf
from bulkjobs.kinds import all_kinds
from bulkjobs.ops import retention
from bulkjobs.ops.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Delete jobs that finished (completed, failed or cancelled) longer ago than "
        "--older-than, with their items, a chunk per transaction; safe while processors "
        "run. Active jobs and the suppression list are never touched."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            metavar="AGE",
            help="Age like 180d (days) or 12h (hours) since the job finished "
            f"(default {conf.get('RETENTION_DAYS'):g}d, BULKJOBS_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be deleted."
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=retention.ITEMS_PER_TRANSACTION,
            help=f"Items deleted per transaction (default {retention.ITEMS_PER_TRANSACTION}).",
        )

    def handle(self, *args, **options):
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1.")
        text = options["older_than"] or f"{conf.get('RETENTION_DAYS'):g}d"
        try:
            age = retention.parse_age(text)
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        cutoff = timezone.now() - age
        verb = "Would delete" if options["dry_run"] else "Deleted"
        parts = []
        for kind in sorted(all_kinds(), key=lambda kind: kind.name):
            if options["dry_run"]:
                pruned = retention.count(kind, cutoff)
            else:
                pruned = retention.prune(kind, cutoff, options["chunk_size"])
            parts.append(f"{pruned.jobs} {kind.name} job(s) with {pruned.items} item(s)")
        if not options["dry_run"]:
            retention.prune_alert_records(cutoff)
        self.stdout.write(
            f"{verb} {', '.join(parts)} finished before {cutoff:%Y-%m-%d %H:%M} UTC "
            f"(older than {text.strip()})."
        )
