"""The table of what an item's outcome means: done, retry with backoff, failed, given up."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from bulkjobs.decisions import Backoff, decide, parse_retry_after
from bulkjobs.kinds import Outcome
from bulkjobs.models import Status

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BACKOFF = Backoff(base_seconds=30, max_seconds=600)


class Fixed:
    """A random source that always picks the same fraction of the range."""

    def __init__(self, fraction):
        self.fraction = fraction

    def uniform(self, low, high):
        return low + (high - low) * self.fraction


def seconds(n):
    return NOW + timedelta(seconds=n)


@pytest.mark.parametrize(
    "outcome, attempts, rng, expected",
    [
        # done and failed are final whatever the attempts
        (Outcome.done(), 1, Fixed(0), (Outcome.DONE, Status.COMPLETED, "", None, NOW)),
        (Outcome.done("sent"), 5, Fixed(0), (Outcome.DONE, Status.COMPLETED, "sent", None, NOW)),
        (
            Outcome.failed("Rejected at RCPT: 550"),
            1,
            Fixed(0),
            (Outcome.FAILED, Status.FAILED, "Rejected at RCPT: 550", None, NOW),
        ),
        # wait (one of the kind's providers paused): back to pending after its
        # retry_after, no backoff, and never given up however many attempts were made
        (
            Outcome.wait("Google Wallet denied permission", retry_after=60),
            5,
            Fixed(1),
            (Outcome.WAIT, Status.PENDING, "Google Wallet denied permission", seconds(60), None),
        ),
        # retry: back to pending, wait in [c/2, c], c = 30 * 2**(attempts-1)
        (
            Outcome.retry("450"),
            1,
            Fixed(0),
            (Outcome.RETRY, Status.PENDING, "450", seconds(15), None),
        ),
        (
            Outcome.retry("450"),
            1,
            Fixed(1),
            (Outcome.RETRY, Status.PENDING, "450", seconds(30), None),
        ),
        (
            Outcome.retry("450"),
            3,
            Fixed(1),
            (Outcome.RETRY, Status.PENDING, "450", seconds(120), None),
        ),
        # each attempt doubles the ceiling (its cap: test_the_backoff_ceiling_is_capped)
        (
            Outcome.retry("450"),
            4,
            Fixed(1),
            (Outcome.RETRY, Status.PENDING, "450", seconds(240), None),
        ),
        # a provider's Retry-After wins over a shorter backoff, not over a longer one
        (
            Outcome.retry("429", retry_after=3600),
            1,
            Fixed(1),
            (Outcome.RETRY, Status.PENDING, "429", seconds(3600), None),
        ),
        (
            Outcome.retry("429", retry_after=5),
            2,
            Fixed(1),
            (Outcome.RETRY, Status.PENDING, "429", seconds(60), None),
        ),
        # the last allowed attempt gives up
        (
            Outcome.retry("450 busy"),
            5,
            Fixed(0),
            (Outcome.FAILED, Status.FAILED, "Gave up after 5 attempts: 450 busy", None, NOW),
        ),
        (
            Outcome.retry("450 busy"),
            7,
            Fixed(0),
            (Outcome.FAILED, Status.FAILED, "Gave up after 7 attempts: 450 busy", None, NOW),
        ),
    ],
)
def test_decision_table(outcome, attempts, rng, expected):
    decision = decide(outcome, attempts=attempts, max_attempts=5, now=NOW, backoff=BACKOFF, rng=rng)
    assert (
        decision.counted_as,
        decision.status,
        str(decision.reason),
        decision.next_attempt_at,
        decision.processed_at,
    ) == expected


def test_the_backoff_ceiling_is_capped():
    assert Backoff(base_seconds=30, max_seconds=600).delay(10, Fixed(1)) == timedelta(seconds=600)
    assert Backoff(base_seconds=30, max_seconds=600).delay(10, Fixed(0)) == timedelta(seconds=300)


def test_jittered_waits_stay_within_half_the_ceiling_and_the_ceiling():
    rng = random.Random(7)
    waits = {BACKOFF.delay(2, rng) for _ in range(200)}
    assert min(waits) >= timedelta(seconds=30) and max(waits) <= timedelta(seconds=60)
    assert len(waits) > 100  # jitter: retries of many items do not come back together


def test_the_changes_written_for_a_decision():
    decision = decide(
        Outcome.retry("450"), attempts=1, max_attempts=5, now=NOW, backoff=BACKOFF, rng=Fixed(0)
    )
    assert decision.changes() == {
        "status": Status.PENDING,
        "reason": "450",
        # A text no code matches: shown as it is.
        "reason_code": "",
        "reason_params": {},
        "provider_reply": "",
        "next_attempt_at": seconds(15),
        "processed_at": None,
    }


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="Unknown outcome"):
        decide(Outcome("maybe"), attempts=1, max_attempts=5, now=NOW, backoff=BACKOFF, rng=Fixed(0))


@pytest.mark.parametrize(
    "value, expected",
    [
        # delay-seconds
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        # an HTTP-date: the wait until then from NOW, rounded up to whole seconds
        ("Mon, 02 Mar 2026 09:01:30 GMT", 90.0),
        ("Mon, 02 Mar 2026 10:00:00 +0100", 0.0),
        ("Mon, 02 Mar 2026 09:00:00 -0000", 0.0),  # no zone said: GMT, as HTTP-dates are
        # a date already past means now, not a negative wait
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        # an absurd wait is capped at a week (it would overflow the next attempt's time)
        ("99999999999999999999", 604800.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 604800.0),
        # garbage, nothing, negative
        ("soon", None),
        ("Mon, 99 Mar 2026 09:00:00 GMT", None),
        ("1e3", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("-5", None),
        ("-1.5", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_the_longest_provider_wait_still_makes_a_decision():
    wait = parse_retry_after("99999999999999999999", now=NOW)
    outcome = Outcome.retry("429", retry_after=wait)
    decision = decide(outcome, attempts=1, max_attempts=5, now=NOW, backoff=BACKOFF, rng=Fixed(1))
    assert decision.next_attempt_at == NOW + timedelta(days=7)


def test_an_http_date_needs_the_time_it_is_counted_from():
    assert parse_retry_after("Mon, 02 Mar 2026 09:01:30 GMT") is None
    assert parse_retry_after("30") == 30.0
