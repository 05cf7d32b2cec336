"""The rate-limit tokens of batches: which companies have some, and what one batch holds.

A batch pays one token per item to each limit that applies: the company's pace first
(bulkjobs.kinds.JobKind.company_rate), then the kind's shared limits (a mail server's
quota). Tokens are taken up front for the items fetched, the batch is trimmed to the
smallest grant, and the tokens of items it never got to are refunded, so a company's
pace is spent on work done, not on work planned.
"""

from ..kinds import RateLimited
from . import clock, ratelimit


def batch_limits(kind):
    """The buckets a batch takes one token per item from: the company's pace first (its
    key filled in per company, a rate of None when it is off), then the kind's shared
    limits. A list of (key, Rate or None, what people read)."""
    rate = kind.company_rate
    return [(None, rate, f"the company's pace ({rate})"), *kind.batch_rate_limits()]


def companies_with_tokens(kind, limits, companies, pace_tokens=1):
    """The companies whose pace bucket holds `pace_tokens` tokens now (or its whole burst,
    if smaller) while the kind's shared buckets have one; all of them when no limit is
    set; in their order. One query."""
    keys = {kind.company_bucket(company_id): company_id for company_id in companies}
    company_rate = limits[0][1]
    shared = [(key, rate) for key, rate, _what in limits[1:]]
    if company_rate is None and not shared:
        return list(companies)
    needs = {}
    for key, rate in shared:
        needs.setdefault((rate, 1), []).append(key)
    if company_rate is not None:
        needs.setdefault((company_rate, pace_tokens), []).extend(keys)
    short = ratelimit.short_buckets(needs, clock.time())
    if any(key in short for key, _rate in shared):
        return []
    return [company_id for key, company_id in keys.items() if key not in short]


class BatchTokens:
    """The tokens one batch of a company holds."""

    def __init__(self, kind, company_id, limits):
        self.kind = kind
        self.company_id = company_id
        self.limits = limits
        #: (key, rate) of the buckets tokens were taken from
        self.buckets = []
        #: items the tokens pay for
        self.granted = 0
        #: the RateLimited that trimmed the batch, if one did
        self.limited = None
        #: True when that limit was the company's own pace
        self.paced = False

    def take(self, wanted):
        """Take `wanted` tokens from each bucket in turn, each for what the previous
        granted; returns the smallest grant. Tokens an earlier bucket granted beyond it
        are refunded; a short grant notes the limit in `limited`."""
        taken = []
        for key, rate, what in self.limits:
            if rate is None or not wanted:
                continue
            # The company's pace comes first, its key (None in the list) filled in here.
            is_pace = key is None
            key = self.kind.company_bucket(self.company_id) if is_pace else key
            grant = ratelimit.take(key, rate, wanted)
            taken.append((key, rate, grant.granted))
            if grant.granted < wanted:
                self.limited = RateLimited(what, grant.next_at)
                self.paced = is_pace
                wanted = grant.granted
        for key, rate, granted in taken:
            ratelimit.refund(key, rate, granted - wanted)
        self.buckets = [(key, rate) for key, rate, _granted in taken]
        self.granted = wanted
        return wanted

    def refund_unused(self, used):
        """Give back the tokens of items the batch did not get to (a pause, a lost claim,
        a stop): `used` is how many items it marked."""
        for key, rate in self.buckets:
            ratelimit.refund(key, rate, self.granted - used)
