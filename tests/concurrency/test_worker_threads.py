"""The run's threads (bulkjobs.engine.threads) keep a database connection from one task to the
next, close it when the pool shuts down, and start a task that follows a failure on a
fresh one. Transactional tests: each thread has its own connection."""

import threading

import pytest
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from bulkjobs.engine.threads import WorkerThreads
from cards.models import Company
from tests.concurrency.test_connection_lost import backend_id, end_session, server_database

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
