"""Base class of the processing commands (`process_email_jobs`, `process_wallet_jobs`).

Without --loop: one run, a one-line summary, exit (what cron calls every minute).
With --loop: a worker for a VPS that runs until SIGTERM/SIGINT, finishing the current
item first, and sleeps between runs that found nothing to do.
"""

import signal
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from cards.models import Company

from . import conf
from .engine import run_once
from .kinds import get_kind


class ProcessJobsCommand(BaseCommand):
    kind_name = ""
    # System checks cover every app: an expired wallet certificate must not stop email
    # delivery, and an idle cron run should cost as little as possible. Operators run
    # `manage.py check --deploy` when they deploy.
    requires_system_checks = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stopping = False

    @property
    def kind(self):
        return get_kind(self.kind_name)

    def add_arguments(self, parser):
        kind = self.kind
        parser.add_argument(
            "--batch-size",
            type=int,
            help=f"Items per company per run (default {kind.default_batch_size}, "
            f"settings.BULKJOBS[{kind.batch_size_setting!r}]).",
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            help="Stop claiming new companies after this many seconds "
            f"(default {conf.get('MAX_SECONDS')}, below cron's minute).",
        )
        parser.add_argument(
            "--company",
            action="append",
            metavar="SLUG_OR_ID",
            help="Only serve this company (repeat for several).",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Worker mode: run again and again until SIGTERM or Ctrl-C; "
            "the current item is finished before exiting.",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            default=5.0,
            help="With --loop: seconds to wait after a run that found nothing to do (default 5).",
        )

    def handle(self, *args, **options):
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["max_seconds"] is not None and options["max_seconds"] <= 0:
            raise CommandError("--max-seconds must be positive.")
        company_ids = self._company_ids(options["company"])
        run = dict(
            batch_size=options["batch_size"],
            max_seconds=options["max_seconds"],
            company_ids=company_ids,
            should_stop=lambda: self._stopping,
        )
        if not options["loop"]:
            self.stdout.write(str(run_once(self.kind, **run)))
            return
        self._install_signal_handlers()
        while not self._stopping:
            close_old_connections()
            summary = run_once(self.kind, **run)
            if summary.items_attempted:
                self.stdout.write(str(summary))
            else:
                self._sleep(options["sleep"])
        close_old_connections()
        self.stdout.write("Stopped.")

    def _company_ids(self, values):
        if not values:
            return None
        ids = []
        for value in values:
            company = Company.objects.filter(slug=value).first()
            if company is None and value.isdigit():
                company = Company.objects.filter(pk=int(value)).first()
            if company is None:
                raise CommandError(f"No company with slug or id {value!r}.")
            ids.append(company.pk)
        return ids

    def _install_signal_handlers(self):
        def stop(signum, frame):
            self._stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _sleep(self, seconds):
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))
