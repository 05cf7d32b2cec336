"""The threads a run serves companies and batch lanes with, and the signal that stops them.

Django opens a database connection per thread. concurrent.futures' pool gives no hook to
close a thread's connections when it is done with them, so the engine used to close them
after every task: a run of 40 batches opened some 90 connections (about 3 ms of the
client's and the server's CPU each, and a process on the server for every one). These
threads keep theirs from one task to the next and close them when the run shuts the pool
down, so a run opens one per thread at most. A task that raises closes its thread's
connections at once: the next task starts on a fresh connection, not on one that may be
dead or mid-transaction, and one found dropped after a task is closed too.
"""

import queue
import threading
from concurrent.futures import Future

from . import outage


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
    own, which may be fine). The thread's connections are the pool's to close."""
    try:
        return function(*args)
    except BaseException as exc:
        stop.set()
        if outage.is_connection_lost(exc):
            outage.mark_connection_lost(exc)
        raise


class WorkerThreads:
    """Up to `size` threads, started as tasks arrive, that run submitted calls in turn.

    Use as a context manager, or call shutdown(): it waits for the tasks submitted and
    then closes every thread's database connections.
    """

    def __init__(self, size, name):
        self.size = size
        self.name = name
        self._tasks = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
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
            self._tasks.put((future, function, args))
        return future

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

    def _work(self):
        try:
            while (task := self._tasks.get()) is not None:
                future, function, args = task
                if future.set_running_or_notify_cancel():
                    try:
                        result = function(*args)
                    except BaseException as exc:
                        outage.close_connections()
                        future.set_exception(exc)
                    else:
                        if outage.connection_lost():
                            # Dropped under a task that carried on (no query since): the
                            # next task reconnects instead of failing on a dead socket.
                            outage.close_connections()
                        future.set_result(result)
                with self._lock:
                    self._idle += 1
        finally:
            outage.close_connections()
