"""Base class of the processing commands (`process_email_jobs`, `process_wallet_jobs`).

Without --loop: one run, a one-line summary, exit (what cron calls every minute).
With --loop: a worker for a VPS that runs until SIGTERM/SIGINT, finishing the current
item in every thread first, and sleeps between runs that found nothing to do.
With --until-empty: the same, but it exits 0 once no job has work due now (Laravel's
`queue:work --stop-when-empty`): for manual runs and tests.

A lost database connection (the server restarted) is not a crash. A worker logs one
WARNING, waits for the database with backoff, releases the claims its cut-short run
held (so their jobs go on at once, not after the 10-minute stuck rule), logs one INFO
and carries on; the item that was in flight is settled by its kind's interrupted
policy on the next claim. A one-shot run tries the same for a few seconds, then exits
with a one-line error.
"""

import logging
import signal
import sys
import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from .. import conf
from ..engine import Run, StopSignal, outage
from ..kinds import get_kind
from ..models import ACTIVE_STATUSES, Status
from . import schema
from .options import company_from_option

# How long a one-shot run whose database went away keeps trying to release its claims
# before it exits: long enough for a server restart, short beside cron's minute.
ONE_SHOT_RELEASE_SECONDS = 10.0


class OperatorCommand(BaseCommand):
    """A command cron runs: a setting the operator must fix is reported as one line that
    names it and says what to put (cron mails what a command prints), not a traceback;
    so is a database schema behind the code (exit code 3, bulkjobs/ops/schema.py)."""

    #: Check the schema before handle(); else only once a query fails about a missing
    #: table or column (the processing commands: cron starts them every minute).
    check_schema_first = True
    #: The logger of the schema's one line.
    schema_log_name = "bulkjobs.schema"

    def execute(self, *args, **options):
        with schema.exit_when_behind(self.schema_log_name, self.check_schema_first):
            return super().execute(*args, **options)

    def run_from_argv(self, argv):
        try:
            super().run_from_argv(argv)
        except ImproperlyConfigured as exc:
            # As Django reports a CommandError (reading the options' defaults can fail too).
            self.stderr.write(f"CommandError: {exc}")
            sys.exit(1)


class ProcessJobsCommand(OperatorCommand):
    kind_name = ""
    # System checks cover every app: an expired wallet certificate must not stop email
    # delivery, and an idle cron run should cost as little as possible. Operators run
    # `manage.py check --deploy` when they deploy.
    requires_system_checks = []
    check_schema_first = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: Set by SIGTERM / SIGINT; every run and batch of the command stops with it.
        self.stop = StopSignal()

    @property
    def kind(self):
        return get_kind(self.kind_name)

    @property
    def schema_log_name(self):
        return self.kind.log_name

    def add_arguments(self, parser):
        kind = self.kind
        parser.add_argument(
            "--batch-size",
            type=int,
            help=f"Items per batch: a company may get several batches in one run "
            f"(default {kind.default_batch_size}, "
            f"settings.BULKJOBS[{kind.batch_size_setting!r}]).",
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            help="Stop claiming companies (and starting rounds) after this many seconds "
            f"(default {conf.get('MAX_SECONDS')}, below cron's minute).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="Companies served at once, each with its own claim, database connection "
            f"and provider connection (default {kind.default_concurrency}, "
            f"BULKJOBS_{kind.concurrency_setting}).",
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
            "--until-empty",
            action="store_true",
            help="Run again and again until no job has work due now, then exit 0. Items "
            "waiting for their retry time and jobs paused for their provider do not count; "
            "work held back by a rate limit does (it waits for it).",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            default=5.0,
            help="With --loop or --until-empty: seconds to wait after a run that found nothing "
            "to do (default 5).",
        )

    def handle(self, *args, **options):
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["max_seconds"] is not None and options["max_seconds"] <= 0:
            raise CommandError("--max-seconds must be positive.")
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.")
        run_options = dict(
            batch_size=options["batch_size"],
            max_seconds=options["max_seconds"],
            concurrency=options["concurrency"],
            stop=self.stop,
        )
        if options["loop"] and options["until_empty"]:
            raise CommandError("Use --loop (run until stopped) or --until-empty, not both.")
        if options["loop"] or options["until_empty"]:
            self._install_signal_handlers()
            self._work(options["company"], run_options, options["sleep"], options["until_empty"])
        else:
            self._run_once(options["company"], run_options)

    def _run_once(self, companies, options):
        run = None
        try:
            run = Run(self.kind, company_ids=self._company_ids(companies), **options)
            summary = run.execute()
        except outage.connection_error_types() as exc:
            if not outage.is_connection_lost(exc):
                raise
            self._give_up_after(exc, run)
            # Exactly one line, the logged one: it reaches the log file (cron throws the
            # terminal's output away) and the terminal; a CommandError would repeat it.
            raise SystemExit(1) from None
        self.stdout.write(str(summary))

    def _give_up_after(self, exc, run):
        """Log the one-line error of a one-shot run that lost its database."""
        error = f"The database did not answer ({outage.describe(exc)}); this run stopped."
        released = None
        held = run.held_claims if run is not None else set()
        if held:
            # Released claims let the next run carry on at once. While the database is
            # down nothing can be released: the stuck rule frees them after
            # STUCK_MINUTES, and each item in flight is settled by its kind's policy.
            released = outage.when_database_answers(
                run.release_claims,
                should_stop=self.stop.is_set,
                deadline=time.monotonic() + ONE_SHOT_RELEASE_SECONDS,
            )
        outage.close_connections()
        if released is not None:
            error += f" Released its {released} claimed job(s) when the database came back."
        elif held:
            error += (
                f" Its {len(held)} claimed job(s) are released by the stuck rule after "
                f"{conf.get('STUCK_MINUTES'):g} minutes (or the admin's 'Release stuck claim')."
            )
        error += " Check that the database server is running and DATABASE_URL is right."
        logging.getLogger(self.kind.log_name).error("%s", error)

    def _work(self, companies, options, sleep_seconds, until_empty=False):
        log = logging.getLogger(self.kind.log_name)
        resolved, company_ids = False, None
        farewell = "Stopped."
        while not self.stop.is_set():
            run = None
            try:
                close_old_connections()
                # Resolved here, inside the guard: a worker may start while the database is down.
                if not resolved:
                    company_ids, resolved = self._company_ids(companies), True
                run = Run(self.kind, company_ids=company_ids, **options)
                summary = run.execute()
                # Asked only after a run that did nothing: a busy run's queue is not empty.
                empty = (
                    until_empty
                    and not summary.items_attempted
                    and not work_due_now(self.kind, company_ids)
                )
            except outage.connection_error_types() as exc:
                if not outage.is_connection_lost(exc):
                    raise
                self._wait_out_outage(log, exc, run)
                continue
            if summary.items_attempted:
                self.stdout.write(str(summary))
            elif empty:
                farewell = "No work due now; stopped."
                break
            else:
                self._sleep(sleep_seconds)
        outage.close_connections()
        self.stdout.write(farewell)

    def _wait_out_outage(self, log, exc, run):
        """One WARNING when the outage starts, one INFO when it ends, nothing per try."""
        log.warning(
            "Database unreachable (%s); waiting for the database, retrying with backoff "
            "up to every %d s",
            outage.describe(exc),
            outage.MAX_RETRY_SECONDS,
        )
        started = time.monotonic()
        released = outage.when_database_answers(
            run.release_claims if run is not None else lambda: 0,
            should_stop=self.stop.is_set,
        )
        if released is None:
            log.warning(
                "Stopped while the database was unreachable; %d claimed job(s) will be "
                "released by the stuck rule after %g minutes",
                len(run.held_claims) if run is not None else 0,
                conf.get("STUCK_MINUTES"),
            )
            return
        log.info(
            "Database answers again after %.0f s; %d claimed job(s) released, carrying on",
            time.monotonic() - started,
            released,
        )

    def _company_ids(self, values):
        if not values:
            return None
        ids = []
        for value in values:
            ids.append(company_from_option(value).pk)
        return ids

    def _install_signal_handlers(self):
        def stop(signum, frame):
            self.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _sleep(self, seconds):
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))


def work_due_now(kind, company_ids=None):
    """Whether any job of the kind has work a run could do now: an item due, or one a
    dead run left `processing`, in an active job that is not paused. One query."""
    items = kind.item_model.objects.filter(
        job__status__in=ACTIVE_STATUSES, job__paused_at__isnull=True
    )
    items = items.due(timezone.now()) | items.filter(
        status=Status.PROCESSING, job__claim_token__isnull=True
    )
    if company_ids:
        items = items.filter(job__company_id__in=company_ids)
    return items.exists()
