"""Worker processes: every processing command registers itself while it runs, so that each
claim belongs to a live process.

A Registration inserts a Worker row when the command starts, refreshes its heartbeat
from a thread of its own every WORKER_HEARTBEAT_SECONDS, and on the way out releases the
claims it still owns and deletes its row. A claim whose owner's heartbeat is older than
WORKER_TIMEOUT_SECONDS is released by the next run's rescue (a process that died, was
killed or stopped); one whose owner row is gone, at once. A command starting on a host
also removes the rows of that host's processes that no longer exist, so a worker that
crashed (a full disk, an OOM kill) has its claims released by its own restart.

Times are written with the database's clock (Now() in the statement), never the host's.
"""

import logging
import os
import socket
import threading

from django.db.models.functions import Now

from .. import conf
from ..kinds import get_kind
from ..models import Worker
from . import clock, outage

log = logging.getLogger("bulkjobs.workers")


class Registration:
    """A processing command's Worker row and its heartbeat thread."""

    def __init__(self, kind_name):
        self.kind_name = kind_name
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        #: The Worker row's id; None until registered (or after its row was removed).
        self.id = None
        self._stop = threading.Event()
        self._thread = None
        #: What this worker's last run could not settle because rows were locked: its
        #: claims (token -> Claim) and what it could not write (Run.settle_leftovers).
        self._leftovers = ({}, [])

    def keep_leftovers(self, claims, unwritten):
        """Keep a run's unsettled claims, and what it could not write for them, for the
        next run of this worker."""
        self._leftovers = (dict(claims), [e for e in unwritten if e.claim.token in claims])

    def take_leftovers(self):
        """What the previous run left (claims by token, Unwritten entries); forgotten here."""
        leftovers, self._leftovers = self._leftovers, ({}, [])
        return leftovers

    def ensure(self):
        """Register if not registered yet (on the first run, or once the database answers
        after an outage). Returns the Worker id."""
        if self.id is None:
            self._forget_dead_neighbours()
            self.id = self._insert()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name=f"{self.kind_name}-worker-heartbeat", daemon=True
                )
                self._thread.start()
        return self.id

    def end(self):
        """Stop the heartbeat, release the claims this worker still owns and remove its
        row. Best effort: with the database unreachable (or its disk full) the row stays,
        and its claims are released by the next start on this host, or by any run after
        WORKER_TIMEOUT_SECONDS."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.id is None:
            return 0
        worker_id, self.id = self.id, None
        try:
            released = get_kind(self.kind_name).job_model.objects.release_owned_by(worker_id)
            Worker.objects.filter(pk=worker_id).delete()
        except outage.connection_error_types() as exc:
            # The command has said the database is unreachable already; its claims are
            # released by the next start on this host, or by any run after the timeout.
            log.debug("Worker %s:%s could not unregister: %s", self.host, self.pid, exc)
            outage.close_connections()
            return 0
        if released:
            log.info(
                "Worker %s:%s released %d claim(s) on its way out", self.host, self.pid, released
            )
        return released

    def _insert(self):
        worker = Worker.objects.create(
            kind=self.kind_name,
            host=self.host,
            pid=self.pid,
            started_at=Now(),
            heartbeat_at=Now(),
            clock_skew_seconds=clock.reading().offset,
        )
        return worker.pk

    def _forget_dead_neighbours(self):
        """Remove the rows of this host's processes that no longer exist (and any row
        claiming to be this very process: a restart that got the same pid, as in a
        container). Their claims then belong to nobody, and this run's rescue releases
        them at once."""
        dead = [
            worker_id
            for worker_id, pid in Worker.objects.filter(host=self.host).values_list("pk", "pid")
            if pid == self.pid or not process_exists(pid)
        ]
        if dead:
            Worker.objects.filter(pk__in=dead).delete()
            log.info("Removed %d worker(s) of this host that are no longer running", len(dead))

    def _beat(self):
        """Refresh the row every WORKER_HEARTBEAT_SECONDS until end(); a row found missing
        (this worker was taken for dead, its claims released) is registered again."""
        try:
            while not self._stop.wait(conf.get("WORKER_HEARTBEAT_SECONDS")):
                worker_id = self.id
                if worker_id is None:
                    continue
                try:
                    alive = Worker.objects.filter(pk=worker_id).update(
                        heartbeat_at=Now(), clock_skew_seconds=clock.reading().offset
                    )
                    if not alive and self.id == worker_id:
                        log.warning(
                            "Worker %s:%s was taken for dead; registering again",
                            self.host,
                            self.pid,
                        )
                        self.id = self._insert()
                except outage.connection_error_types():
                    # The run sees the outage too and waits for the database; a missed
                    # beat or two is what WORKER_TIMEOUT_SECONDS allows for.
                    outage.close_connections()
        finally:
            outage.close_connections()


def process_exists(pid):
    """Whether a process with this pid runs on this host (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
