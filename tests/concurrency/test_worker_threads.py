"""The run's threads (bulkjobs.engine.threads) keep a database connection from one task to the
next, close it when the pool shuts down, and start a task that follows a failure on a
fresh one. Transactional tests: each thread has its own connection."""

import threading

import pytest
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from bulkjobs.engine.threads import WorkerThreads
from cards.models import Company
from tests.concurrency.test_connection_lost import backend_id, end_session, server_database
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["server_database"]  # a fixture used below


def thread_connection():
    """This thread's connection wrapper and the driver's connection under it, after a query."""
    Company.objects.exists()
    wrapper = connections[DEFAULT_DB_ALIAS]
    return wrapper, wrapper.connection


def test_a_thread_keeps_its_connection_between_tasks_and_closes_it_at_shutdown():
    with WorkerThreads(1, "test") as threads:
        (wrapper, first), (_, second) = (
            threads.submit(thread_connection).result() for _ in range(2)
        )
        assert first is second
        assert wrapper is not connections[DEFAULT_DB_ALIAS]  # the thread's own, not the test's
    assert wrapper.connection is None


def test_a_task_that_raises_leaves_the_next_one_a_fresh_connection():
    def fail_after_a_query():
        thread_connection()
        raise ValueError("the task failed")

    with WorkerThreads(1, "test") as threads:
        _, before = threads.submit(thread_connection).result()
        with pytest.raises(ValueError):
            threads.submit(fail_after_a_query).result()
        _, after = threads.submit(thread_connection).result()
    assert after is not before


def test_a_connection_dropped_under_a_task_that_carried_on_is_replaced(server_database):
    def lose_the_connection_and_carry_on():
        end_session(backend_id())
        try:
            Company.objects.exists()
        except DatabaseError:
            pass  # a task that handles the error itself and returns normally
        return "done"

    with WorkerThreads(1, "test") as threads:
        assert threads.submit(lose_the_connection_and_carry_on).result() == "done"
        # Without the check after each task this query would fail on the dead socket.
        assert threads.submit(Company.objects.count).result() == 0


def test_threads_start_only_as_tasks_need_them():
    with WorkerThreads(4, "lazy") as threads:
        for _ in range(3):
            threads.submit(thread_connection).result()  # one at a time: one thread suffices
        started = [t for t in threading.enumerate() if t.name.startswith("lazy-")]
        assert len(started) == 1


def test_tasks_after_a_shutdown_get_threads_again():
    threads = WorkerThreads(1, "again")
    release = threading.Event()

    def busy_then_connected():
        release.wait(10)
        return thread_connection()

    # Shut down while the task still runs: its thread ends once the task is done.
    running = threads.submit(busy_then_connected)
    stopping = threading.Thread(target=threads.shutdown)
    stopping.start()
    stopping.join(0.2)
    assert stopping.is_alive()  # waiting for the task
    release.set()
    stopping.join(10)
    _, before = running.result(timeout=10)
    wrapper, after = threads.submit(thread_connection).result(timeout=10)
    threads.shutdown()
    assert after is not before and wrapper.connection is None


def test_shrinking_ends_the_threads_beyond_the_size_and_closes_their_connections():
    together = threading.Barrier(3)

    def connected_together():
        wrapper, _ = thread_connection()
        together.wait(10)  # three threads, each with its own connection
        return wrapper

    with WorkerThreads(3, "shrink") as threads:
        wrappers = [f.result(10) for f in [threads.submit(connected_together) for _ in range(3)]]
        assert len({id(wrapper) for wrapper in wrappers}) == 3
        threads.shrink(1)
        # Idle threads beyond the size end at once, freeing their connections for others.
        assert wait_until(lambda: sum(w.connection is not None for w in wrappers) == 1, 10)
        # The one left goes on, on its connection; no thread starts beyond the size.
        for _ in range(3):
            wrapper, _ = threads.submit(thread_connection).result(10)
            assert wrapper in wrappers and wrapper.connection is not None
        assert len([t for t in threading.enumerate() if t.name.startswith("shrink-")]) == 1
    assert all(wrapper.connection is None for wrapper in wrappers)


def test_a_busy_thread_beyond_the_size_ends_after_its_task():
    release = threading.Event()

    def connected_after_release():
        wrapper, _ = thread_connection()
        release.wait(10)
        return wrapper

    with WorkerThreads(2, "busy") as threads:
        futures = [threads.submit(connected_after_release) for _ in range(2)]
        threads.shrink(1)
        release.set()
        wrappers = [future.result(10) for future in futures]
        assert wait_until(lambda: sum(w.connection is not None for w in wrappers) == 1, 10)
        assert threads.submit(Company.objects.count).result(10) == 0
