"""Shared rate limits: parsing, the bucket's arithmetic, and concurrent takers."""

import math
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from bulkjobs.engine.ratelimit import Rate, parse_rate, take


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("50/min", 50, 60),
        ("20/s", 20, 1),
        ("500/h", 500, 3600),
        ("1000/day", 1000, 86400),
        (" 10 / minutes ", 10, 60),
        ("2.5/s", 2.5, 1),
    ],
)
def test_rates_parse(text, count, period):
    assert parse_rate(text) == Rate(count, period)


@pytest.mark.parametrize("text", [None, "", "0", "off", "none"])
def test_no_limit(text):
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["50", "50/fortnight", "-1/s", "0/min", "fast", "1/0s"])
def test_bad_rates_say_what_is_accepted(text):
    with pytest.raises(ImproperlyConfigured, match=r"'50/min', '20/s'"):
        parse_rate(text, "EMAIL_RATE_LIMIT")


def test_rate_describes_itself():
    assert str(parse_rate("50/min")) == "50/min"
    assert str(parse_rate("2.5/s")) == "2.5/s"


def test_a_fresh_bucket_allows_one_burst_then_one_per_interval(db):
    rate = parse_rate("60/min")
    assert take("k", rate, 50, now=1000.0).granted == 50
    partial = take("k", rate, 50, now=1000.0)
    assert partial.granted == 10
    assert partial.next_at == pytest.approx(1001.0)
    empty = take("k", rate, 5, now=1000.5)
    assert empty.granted == 0
    assert empty.next_at == pytest.approx(1001.0)
    # Three seconds later three tokens have been paid back, and no more.
    assert take("k", rate, 5, now=1003.0).granted == 3
    assert take("k", rate, 5, now=1003.0).granted == 0


def test_a_long_idle_bucket_refills_to_its_burst_only(db):
    rate = parse_rate("10/min")
    assert take("k", rate, 10, now=0.0).granted == 10
    assert take("k", rate, 100, now=10_000.0).granted == 10


def test_buckets_are_independent_and_no_limit_grants_everything(db):
    rate = parse_rate("5/s")
    assert take("a", rate, 5, now=0.0).granted == 5
    assert take("b", rate, 5, now=0.0).granted == 5
    assert take("c", None, 500).granted == 500


def test_taking_is_one_query_when_the_bucket_has_room(db, django_assert_num_queries):
    rate = parse_rate("50/min")
    take("k", rate, 1, now=0.0)
    with django_assert_num_queries(1):
        assert take("k", rate, 10, now=1.0).granted == 10


def test_over_time_the_limit_holds(db):
    rate = parse_rate("50/min")
    taken = sum(take("k", rate, 7, now=float(second)).granted for second in range(600))
    # One burst at 0 s, then 50/min over the 599 s that follow, never more.
    assert taken == 50 + math.floor(599 * 50 / 60)


@pytest.mark.django_db(transaction=True)
def test_concurrent_takers_never_overspend():
    """Threads with their own connections race for one bucket at the same instant."""
    rate = parse_rate("100/min")
    take("shared", rate, 0)  # nothing taken; the row is created by the first real take
    totals = []
    errors = []
    start = threading.Barrier(6)

    def worker():
        got = 0
        try:
            start.wait()
            while True:
                grant = take("shared", rate, 3, now=5000.0)
                if not grant.granted:
                    break
                got += grant.granted
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            totals.append(got)
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(totals) == 100
