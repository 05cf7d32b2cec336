"""The APNs provider token: an ES256 JWT of one .p8 key, shared by every process and host.

Apple refuses a token older than an hour and answers `429 TooManyProviderTokenUpdates`
to new ones within 20 minutes, while cron starts a process every minute: the token is
therefore kept in the database (ApnsProviderToken), shared by every process and host,
and replaced once it is 50 minutes old, or at once when APNs refuses it and it is at
least 20 minutes old. wallet/apple/apns.py sends it with every push (token auth).
"""

import datetime
import hashlib
import threading
import time

import jwt
from django.db import IntegrityError, transaction

from wallet.models import ApnsProviderToken

# A token is reused until it is this old (Apple: refresh at least every 60 minutes) ...
TOKEN_REUSE_SECONDS = 50 * 60
# ... and never replaced before this age (Apple: at most once every 20 minutes).
TOKEN_MIN_AGE_SECONDS = 20 * 60
# Hosts' clocks differ a little: a token dated up to this far ahead counts as new.
CLOCK_SKEW_SECONDS = 5 * 60


def _reusable(age):
    return -CLOCK_SKEW_SECONDS <= age < TOKEN_REUSE_SECONDS


def _as_datetime(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


class ProviderToken:
    """The ES256 provider token of one key, shared with every process through the database.

    Each process also keeps it in memory, so a push costs no query; the row is read
    again when that copy turns 50 minutes old or APNs refuses it. Thread-safe.
    """

    def __init__(self, key_pem, key_id, team_id):
        self.key_pem = key_pem
        self.key_id = key_id
        self.team_id = team_id
        self.fingerprint = hashlib.sha256(key_pem).hexdigest()
        self._lock = threading.Lock()
        self._token = None
        self._issued_at = 0.0
        #: Tokens this process minted and stored (for tests and the benchmark).
        self.minted = 0

    def get(self):
        """The token to send now."""
        with self._lock:
            now = time.time()
            if self._token is None or not _reusable(now - self._issued_at):
                self._token, self._issued_at = self._current(now)
            return self._token

    def renew(self, rejected):
        """APNs refused `rejected` as expired or invalid: returns the token to try once
        more, or None when Apple's 20 minutes forbid a new one (`rejected` is still the
        shared token and younger than that, so a new one would not help and earns a 429)."""
        with self._lock:
            now = time.time()
            stored = self._stored()
            if stored is None or stored[0] != rejected:
                # Another process or thread replaced it meanwhile (or the row was deleted).
                self._token, self._issued_at = self._current(now)
                return self._token if self._token != rejected else None
            if -CLOCK_SKEW_SECONDS <= now - stored[1] < TOKEN_MIN_AGE_SECONDS:
                return None
            self._token, self._issued_at = self._replace(rejected, now)
            return self._token

    def _rows(self):
        return ApnsProviderToken.objects.filter(
            team_id=self.team_id, key_id=self.key_id, key_fingerprint=self.fingerprint
        )

    def _stored(self):
        row = self._rows().values_list("token", "issued_at").first()
        return (row[0], row[1].timestamp()) if row else None

    def _current(self, now):
        """The shared token, or a new one when there is none or it is 50 minutes old."""
        stored = self._stored()
        if stored is None:
            return self._insert(now)
        if _reusable(now - stored[1]):
            return stored
        return self._replace(stored[0], now)

    def _insert(self, now):
        token = self._mint(now)
        try:
            with transaction.atomic():
                ApnsProviderToken.objects.create(
                    team_id=self.team_id,
                    key_id=self.key_id,
                    key_fingerprint=self.fingerprint,
                    token=token,
                    issued_at=_as_datetime(now),
                )
        except IntegrityError:
            # Another process stored the first token a moment earlier: use that one.
            return self._stored()
        self.minted += 1
        return token, now

    def _replace(self, old, now):
        """Replace `old` by a new token unless another process already replaced it (one
        conditional UPDATE); returns whichever token is shared now."""
        token = self._mint(now)
        if self._rows().filter(token=old).update(token=token, issued_at=_as_datetime(now)):
            self.minted += 1
            return token, now
        return self._stored() or self._insert(now)

    def _mint(self, now):
        return jwt.encode(
            {"iss": self.team_id, "iat": int(now)},
            self.key_pem,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
