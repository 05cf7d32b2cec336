"""Base class of the processing commands (`process_email_jobs`, `process_wallet_jobs`).

Without --loop: one run, a one-line summary, exit (what cron calls every minute).
With --loop: a worker for a VPS that runs until SIGTERM/SIGINT, finishing the current
item in every thread first, and sleeps between runs that found nothing to do.
With --until-empty: the same, but it exits 0 once no job has work due now (Laravel's
`queue:work --stop-when-empty`): for manual runs and tests.

A lost database connection (the server restarted) is not a crash. A worker logs one
WARNING, waits for the database with backoff, writes the outcomes its cut-short run
knew but could not write, releases the claims it held (so their jobs go on at once,
not after the 10-minute stuck rule), logs one INFO and carries on. An outage that comes straight back goes on with the backoff
where it was, never in a tight loop. A one-shot run tries the same for a few seconds,
then exits with a one-line error.

A database server that is full (max_connections reached) says so, in those words: a
worker thread it refuses makes the run serve fewer companies at once (see
bulkjobs.engine.run), which a worker remembers for its next runs (Concurrency); a run
whose own connection is refused waits with backoff as above.

A statement of the run itself (its bookkeeping, the rescue's scan, the fair order) that
runs into the lock or statement timeout (bulkjobs/engine/locks.py) ends that run with one
ERROR line naming the transaction in the way; its claims are released, and a worker
carries on with its next run. One company's locked job never gets this far: the run
passes that company over (bulkjobs.engine.claim, bulkjobs.engine.batch).
"""

import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections
from django.db.models import F

from .. import conf
from ..engine import Run, StopSignal, clock, locks, outage
from ..engine.turns import Concurrency
from ..engine.workers import Registration
from ..kinds import all_kinds, get_kind
from ..models import ACTIVE_STATUSES, ProcessorRun, Status
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


class JobCommand(OperatorCommand):
    """A command that acts on one job: `manage.py <command> KIND ID` (cancel_job,
    pause_job, resume_job, retry_job). add_arguments() adds the two; job_from() finds the
    job or says which is missing."""

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=[k.name for k in all_kinds()], help="Job kind.")
        parser.add_argument("job_id", type=int, help="The job's id.")

    def job_from(self, options):
        """(kind, job) the options name; a CommandError if there is no such job."""
        kind = get_kind(options["kind"])
        job = kind.job_model.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"No {kind.name} job with id {options['job_id']}.")
        return kind, job


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
        if options["loop"] and options["until_empty"]:
            raise CommandError("Use --loop (run until stopped) or --until-empty, not both.")
        # The claims this process's runs take are its own: registered on the first run,
        # released with its row on the way out (bulkjobs/engine/workers.py).
        worker = Registration(self.kind_name)
        run_options = dict(
            batch_size=options["batch_size"],
            max_seconds=options["max_seconds"],
            concurrency=options["concurrency"],
            stop=self.stop,
            owner=worker,
        )
        try:
            if options["loop"] or options["until_empty"]:
                self._install_signal_handlers()
                self._work(
                    options["company"], run_options, options["sleep"], options["until_empty"]
                )
            else:
                self._run_once(options["company"], run_options)
        finally:
            worker.end()

    def _run_once(self, companies, options):
        run = None
        try:
            run = Run(self.kind, company_ids=self._company_ids(companies), **options)
            summary = run.execute()
        except outage.connection_error_types() as exc:
            if locks.is_timeout(exc):
                self._cut_short_by_timeout(exc, run)
                raise SystemExit(1) from None
            if not outage.is_outage(exc):
                raise
            self._give_up_after(exc, run)
            # Exactly one line, the logged one: it reaches the log file (cron throws the
            # terminal's output away) and the terminal; a CommandError would repeat it.
            raise SystemExit(1) from None
        self.stdout.write(str(summary))

    def _give_up_after(self, exc, run):
        """Log the one-line error of a one-shot run that lost its database."""
        full = outage.is_server_full(exc)
        disk_full = outage.is_disk_full(exc)
        if full:
            error = (
                "The database server refuses new connections: it is full (max_connections "
                f"reached) ({outage.describe(exc)}); this run stopped."
            )
        elif disk_full:
            error = (
                f"The database's disk is full ({outage.describe(exc)}); this run stopped "
                "and wrote nothing more."
            )
        else:
            error = f"The database did not answer ({outage.describe(exc)}); this run stopped."
        released = None
        held = run.held_claims if run is not None else set()
        if held:
            # Released claims let the next run carry on at once. While the database is
            # down nothing can be released: they belong to this process's worker row,
            # which the next start on this host removes (any run elsewhere after
            # WORKER_TIMEOUT_SECONDS), and each item in flight is settled by its kind's
            # policy.
            released = outage.when_database_answers(
                self._recovery(exc, run),
                should_stop=self.stop.is_set,
                deadline=time.monotonic() + ONE_SHOT_RELEASE_SECONDS,
            )
        outage.close_connections()
        if released is not None:
            error += f" Released its {released} claimed job(s) when the database came back."
        elif held:
            error += (
                f" Its {len(held)} claimed job(s) are released by the next run on this host, "
                f"or by any run {conf.get('WORKER_TIMEOUT_SECONDS'):g} s after this one ended."
            )
        if full:
            error += (
                f" Lower BULKJOBS_{self.kind.concurrency_setting} (--concurrency) or "
                "BULKJOBS_*_CONNECTIONS, or raise the server's max_connections."
            )
        elif disk_full:
            error += " Free space on the disk that holds the database; the next run goes on."
        else:
            error += " Check that the database server is running and DATABASE_URL is right."
        logging.getLogger(self.kind.log_name).error("%s", error)

    def _cut_short_by_timeout(self, exc, run):
        """A statement of the run itself ran into the lock or statement timeout: release
        what the run holds and say so in one ERROR line, with the transaction in the way."""
        released = 0
        if run is not None:
            try:
                released = run.release_claims()
            except DatabaseError as again:
                if not locks.is_timeout(again):
                    raise
        error = f"This run stopped: a statement ran into a timeout ({locks.describe(exc)}: "
        error += f"{outage.describe(exc)})."
        if released:
            error += f" Released its {released} claimed job(s)."
        if locks.is_lock_timeout(exc):
            blockers = locks.describe_blockers(self._engine_tables())
            error += f" In the way: {blockers}."
        else:
            error += (
                " Check the database's load, or raise BULKJOBS_STATEMENT_TIMEOUT_SECONDS "
                f"({conf.get('STATEMENT_TIMEOUT_SECONDS'):g})."
            )
        logging.getLogger(self.kind.log_name).error("%s", error)

    def _engine_tables(self):
        from ..models import RateBucket, Worker

        models = (self.kind.job_model, self.kind.item_model, ProcessorRun, Worker, RateBucket)
        return [model._meta.db_table for model in models]

    def _recovery(self, exc, run):
        """What to do once the database answers again after `exc`: write what the run
        knew and release its claims (Run.release_claims). After a full disk, a database
        that answers a SELECT may still refuse writes: a write comes first, so the wait
        goes on until one succeeds."""
        release = run.release_claims if run is not None else (lambda: 0)
        if not outage.is_disk_full(exc):
            return release

        def write_then_release():
            # Rewrites a value as it is: a committed write, whatever the tables hold.
            ProcessorRun.objects.filter(kind=self.kind.name).update(last_summary=F("last_summary"))
            return release()

        return write_then_release

    def _work(self, companies, options, sleep_seconds, until_empty=False):
        log = logging.getLogger(self.kind.log_name)
        resolved, company_ids = False, None
        concurrency = Concurrency(self.kind, options["concurrency"])
        # The outage the worker is in, from its first failed run to its next good one.
        current = None
        farewell = "Stopped."
        while not self.stop.is_set():
            run = None
            try:
                close_old_connections()
                # Resolved here, inside the guard: a worker may start while the database is down.
                if not resolved:
                    company_ids, resolved = self._company_ids(companies), True
                run = Run(self.kind, company_ids=company_ids, **{**options, **concurrency.options})
                summary = run.execute()
                # Asked only after a run that did nothing: a busy run's queue is not empty.
                empty = (
                    until_empty
                    and not summary.items_attempted
                    and not work_due_now(self.kind, company_ids)
                )
            except outage.connection_error_types() as exc:
                if locks.is_timeout(exc):
                    self._cut_short_by_timeout(exc, run)
                    self._sleep(sleep_seconds)
                    continue
                if not outage.is_outage(exc):
                    raise
                if current is None:
                    current = Outage()
                    self._warn_outage(log, exc)
                self._wait_out_outage(log, exc, run, current)
                concurrency.after_outage(exc, run)
                continue
            if current is not None:
                log.info(
                    "Database answers again after %.0f s; %d claimed job(s) released, carrying on",
                    current.recovered_at - current.started,
                    current.released,
                )
                current = None
            concurrency.after_run(run)
            if summary.items_attempted:
                self.stdout.write(str(summary))
            elif empty:
                farewell = "No work due now; stopped."
                break
            else:
                self._sleep(sleep_seconds)
        outage.close_connections()
        self.stdout.write(farewell)

    def _warn_outage(self, log, exc):
        """The one WARNING of an outage, when it begins (one INFO when it ends, see _work;
        nothing per try)."""
        if outage.is_server_full(exc):
            log.warning(
                "The database server refuses new connections: it is full (max_connections "
                "reached); retrying with backoff up to every %d s (%s)",
                outage.MAX_RETRY_SECONDS,
                outage.describe(exc),
            )
        elif outage.is_disk_full(exc):
            log.warning(
                "The database's disk is full (%s); waiting for space, retrying with backoff "
                "up to every %d s",
                outage.describe(exc),
                outage.MAX_RETRY_SECONDS,
            )
        else:
            log.warning(
                "Database unreachable (%s); waiting for the database, retrying with backoff "
                "up to every %d s",
                outage.describe(exc),
                outage.MAX_RETRY_SECONDS,
            )

    def _wait_out_outage(self, log, exc, run, current):
        """Wait until the database answers, then write what the run knew and release its
        claims (see _recovery). A run that failed again at once after the last wait goes
        on with the outage's backoff where it was (after its next delay) instead of trying
        at once again: a database that answers the run's first connection but fails the
        next one (a server that is full, a disk that is) is never retried in a tight
        loop."""
        released = outage.when_database_answers(
            self._recovery(exc, run),
            should_stop=self.stop.is_set,
            delays=current.delays,
            wait_first=current.tries > 0,
        )
        current.tries += 1
        if released is None:
            log.warning(
                "Stopped while the database was unreachable; %d claimed job(s) will be "
                "released by the next run on this host, or by any run %g s after this one "
                "ended",
                len(run.held_claims) if run is not None else 0,
                conf.get("WORKER_TIMEOUT_SECONDS"),
            )
            return
        current.released += released
        current.recovered_at = time.monotonic()

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


@dataclass
class Outage:
    """A worker's database outage: from its first failed run to its next good one."""

    started: float = field(default_factory=time.monotonic)
    #: when the database last answered (and took the run's writes) within it
    recovered_at: float = 0.0
    #: the retry delays, 1, 2, 4 ... 30 s, gone on with by every wait of the outage
    delays: object = field(default_factory=outage.retry_delays)
    tries: int = 0
    released: int = 0


def work_due_now(kind, company_ids=None):
    """Whether any job of the kind has work a run could do now: an item due, or one a
    dead run left `processing`, in an active job that is not paused. One query."""
    items = kind.item_model.objects.filter(
        job__status__in=ACTIVE_STATUSES, job__paused_at__isnull=True
    )
    items = items.due(clock.now()) | items.filter(
        status=Status.PROCESSING, job__claim_token__isnull=True
    )
    if company_ids:
        items = items.filter(job__company_id__in=company_ids)
    return items.exists()
