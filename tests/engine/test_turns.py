"""Whose turn it is within a run after a rate limit cut a company's batch short."""

import time

from bulkjobs.engine.summary import BatchResult, RunSummary
from bulkjobs.engine.turns import Turns


def limited(until, at, paced=False):
    return BatchResult(RunSummary("wallet"), limited_until=until, limited_at=at, paced=paced)


def never_has_tokens(company_id):
    raise AssertionError("asked only after a batch that made progress")


def test_a_provider_slot_ahead_at_refusal_is_waited_for_even_if_it_opened_meanwhile():
    # A loaded machine: the batch wound down for longer than the slot was away.
    now = time.time()
    turns = Turns()
    turns.limited(7, limited(until=now - 0.5, at=now - 0.6))
    turns.after_batch(7, False, seconds_left=30, has_a_batch_of_tokens=never_has_tokens)
    assert 7 not in turns.done
    slept = []
    assert turns.wake(slept.append)
    assert list(turns.queue) == [7]


def test_a_slot_already_open_when_the_limit_refused_is_not_waited_for_again():
    now = time.time()
    turns = Turns()
    turns.limited(7, limited(until=now - 1, at=now))
    turns.after_batch(7, False, seconds_left=30, has_a_batch_of_tokens=never_has_tokens)
    assert 7 in turns.done
    assert not turns.wake(lambda unix_time: None)


def test_a_slot_beyond_the_budget_is_left_to_the_next_run():
    now = time.time()
    turns = Turns()
    turns.limited(7, limited(until=now + 60, at=now))
    turns.after_batch(7, False, seconds_left=30, has_a_batch_of_tokens=never_has_tokens)
    assert 7 in turns.done


def test_the_companys_own_pace_is_the_next_minutes_business():
    now = time.time()
    turns = Turns()
    turns.limited(7, limited(until=now + 1, at=now, paced=True))
    turns.after_batch(7, False, seconds_left=30, has_a_batch_of_tokens=never_has_tokens)
    assert 7 in turns.done
    # It rests until its slot: not offered again in this run before then.
    assert turns.rested([7, 8]) == [8]


def test_progress_queues_a_company_again_only_with_a_batch_of_tokens():
    turns = Turns()
    turns.after_batch(7, True, seconds_left=30, has_a_batch_of_tokens=lambda c: True)
    turns.after_batch(8, True, seconds_left=30, has_a_batch_of_tokens=lambda c: False)
    assert list(turns.queue) == [7]
    assert turns.done == {8}
    assert turns.next(in_flight=()) == 7
