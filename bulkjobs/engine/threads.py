"""The threads a run serves companies and batch lanes with, and the signal that stops them.

Django opens a database connection per thread. concurrent.futures' pool gives no hook to
close a thread's connections when it is done with them, so the engine used to close them
after every task: a run of 40 batches opened some 90 connections (about 3 ms of the
client's and the server's CPU each, and a process on the server for every one). These
threads keep theirs from one task to the next and close them when the run shuts the pool
down, so a run opens one per thread at most. A task that raises closes its thread's
connections at once: the next task starts on a fresh connection, not on one that may be
dead or mid-transaction, and one found dropped after a task is closed too.

A thread the database refuses a connection because the server is full (its first
statement fails: the task did nothing) tells its owner (on_refused) and ends, unless a
task waits for it: the pool goes on with the threads that hold a connection. The owner
gives it fewer tasks at once and shrinks it (bulkjobs.engine.run.Run.connection_refused),
which ends the threads beyond the new size and frees their connections for others.
"""

import queue
import threading
import time
from concurrent.futures import Future

from django.conf import settings
from django.urls import get_resolver
from django.utils import translation

from . import locks, outage

#: Put in a pool's queue for an idle thread beyond its size: that thread ends.
_SURPLUS = object()


def warm_url_resolver():
    """Fill Django's URL reversing tables for every language now, in the calling thread.
    Django fills them lazily, per language, on the first reverse(); threads that need
    them at the same moment (a run's lanes building their first emails) each fill their
    own copy: 20 fills, a quarter of a second of CPU, where 2 do. Once filled, this is a
    dictionary lookup per language."""
    resolver = get_resolver()
    for code in {settings.LANGUAGE_CODE, *(code for code, _name in settings.LANGUAGES)}:
        with translation.override(code):
            resolver.reverse_dict  # noqa: B018 (the property fills the tables)


class StopSignal:
    """Whether work should stop, as one flag per level: a command's (SIGTERM, Ctrl-C), a
    run's (a worker thread failed: claim nothing more) and a batch's (a lane was refused
    or lost the claim: the other lanes stop before their next item). A level is stopped
    when it or any level above it is.

    A plain attribute, not a threading.Event: a signal handler sets it, and an Event's
    lock could be held by the very thread the handler interrupts.
    """

    def __init__(self, parent=None):
        self._parent = parent
        self._set = False

    def set(self):
        self._set = True

    def is_set(self):
        return self._set or (self._parent is not None and self._parent.is_set())

    def child(self):
        """A signal of its own that also stops when this one does."""
        return StopSignal(self)


def in_worker_thread(stop, function, *args):
    """Call function(*args) as a worker thread must: on an error, set `stop` (the other
    workers start nothing more) and note a lost database connection on the error, asked
    here, in the thread whose connection it is (the thread it is re-raised in has its
    own, which may be fine). The thread's connections are the pool's to close, and get the
    engine's lock and statement timeouts (locks.py) before the first task. A connection
    refused because the server is full stops nothing: the task did nothing, and the
    others carry on with their connections."""
    try:
        locks.apply_session_timeouts()
        return function(*args)
    except BaseException as exc:
        if outage.is_server_full(exc):
            raise
        stop.set()
        if outage.is_connection_lost(exc):
            outage.mark_connection_lost(exc)
        raise


class WorkerThreads:
    """Up to `size` threads, started as tasks arrive, that run submitted calls in turn.

    Use as a context manager, or call shutdown(): it waits for the tasks submitted and
    then closes every thread's database connections. `on_refused(exc, started)` is called
    in a thread whose task failed because the database is full, before the task's caller
    sees the error; `started` is the task's start (time.monotonic()).
    """

    def __init__(self, size, name, on_refused=None):
        self.size = size
        self.name = name
        self.on_refused = on_refused
        self._tasks = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
        #: Tasks submitted when no thread was idle and none could start: the next
        #: threads to finish a task take them.
        self._waiting = 0
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.shutdown()

    def submit(self, function, *args):
        """Run function(*args) on one of the threads; returns its Future."""
        future = Future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._waiting += 1
            self._tasks.put((future, function, args))
        return future

    def shrink(self, size):
        """Keep at most `size` threads from now on: idle ones beyond it end now (closing
        their database connections), busy ones when their task is done."""
        with self._lock:
            self.size = min(self.size, size)
            for _ in range(min(self._idle, len(self._threads) - self.size)):
                self._idle -= 1
                self._tasks.put(_SURPLUS)

    def shutdown(self):
        """Wait for the tasks submitted, then end the threads (each closes its
        connections). Tasks submitted afterwards start new threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _thread in threads:
            self._tasks.put(None)
        for thread in threads:
            thread.join()
        # Only now: a thread that finished its task during the join counted itself idle.
        with self._lock:
            self._idle = 0
            self._waiting = 0

    def _work(self):
        try:
            while (task := self._tasks.get()) is not None:
                if task is _SURPLUS:
                    if self._done_with_task():
                        return
                    continue
                future, function, args = task
                if not future.set_running_or_notify_cancel():
                    if self._done_with_task():
                        return
                    continue
                started = time.monotonic()
                try:
                    result = function(*args)
                except BaseException as exc:
                    outage.close_connections()
                    refused = outage.is_server_full(exc)
                    if refused and self.on_refused is not None:
                        self.on_refused(exc, started)
                    # Before the caller learns of it: a task it submits then must not
                    # count on this thread.
                    ending = self._done_with_task(refused)
                    future.set_exception(exc)
                else:
                    if outage.connection_lost():
                        # Dropped under a task that carried on (no query since): the
                        # next task reconnects instead of failing on a dead socket.
                        outage.close_connections()
                    ending = self._done_with_task()
                    future.set_result(result)
                if ending:
                    return
        finally:
            outage.close_connections()

    def _done_with_task(self, refused=False):
        """This thread is free: True if it ends, because the database refused it a
        connection (the next task goes to a thread that has one, not to this one again)
        or because the pool shrank, unless a task waits for it or the pool is shutting
        down; else it counts as idle, or takes a task that waits."""
        current = threading.current_thread()
        with self._lock:
            ending = refused or len(self._threads) > self.size
            if ending and not self._waiting and current in self._threads:
                self._threads.remove(current)
                return True
            if self._waiting:
                self._waiting -= 1
            else:
                self._idle += 1
            return False
