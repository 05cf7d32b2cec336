"""Mail connections kept open from one batch to the next (warm), per process.

Opening an SMTP connection costs round trips before the first message (the TCP
handshake, the greeting, EHLO, with TLS its handshake and often a login) and one more to
QUIT: for a batch lane of 25 messages at one round trip each, that is a sixth of its time
against a distant relay. A lane that ends with a healthy connection gives it back here,
and the next batch (of any company: the relay and the login are the process's, not a
company's) takes it instead of opening one; a worker (--loop) keeps them from run to run.

A connection is kept only while nothing is at stake on it: no envelope sent ahead
(emails/smtp.py), no error reply the server counts since its last delivery. It is kept
for BULKJOBS_EMAIL_KEEP_CONNECTIONS_SECONDS (10 by default, under every relay's idle
timeout we know: Postfix waits 300 s), and one the relay closed or spoke on meanwhile
(a 421 before hanging up) is closed instead of taken. A connection that fails on its
first message anyway (the relay forgot it without a word) costs that message nothing:
emails/kind.py sends it again over a new one, as nothing was delivered before its ".".
At most BULKJOBS_EMAIL_MAX_CONNECTIONS are kept (a lane takes a kept one before it
opens one, so the process never holds more); the rest are closed (QUIT) when the run
ends or the process exits.
"""

import atexit
import select
import smtplib
import threading
import time
from dataclasses import dataclass

from bulkjobs import conf


def _key(backend):
    """What a kept connection must match to be reused: the relay, the login, TLS."""
    return (
        type(backend),
        backend.host,
        backend.port,
        backend.username,
        backend.password,
        backend.use_tls,
        backend.use_ssl,
        backend.ssl_certfile,
        backend.ssl_keyfile,
        backend.timeout,
    )


def _quiet(smtp):
    """True while the relay has neither closed the connection nor said anything on it
    (an idle timeout's 421 comes before the hang-up): nothing to read."""
    sock = getattr(smtp, "sock", None)
    if sock is None or sock.fileno() < 0:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


@dataclass(eq=False)
class _Kept:
    key: tuple
    smtp: smtplib.SMTP
    #: time.monotonic() when it was given back
    since: float


class ConnectionPool:
    def __init__(self):
        self._lock = threading.Lock()
        #: _Kept connections, oldest first
        self._idle = []

    def take(self, backend):
        """Give `backend` (Django's SMTP EmailBackend, not open) a kept connection to its
        relay; True if it got one. Expired or closed ones met on the way are closed."""
        key, keep = _key(backend), conf.get("EMAIL_KEEP_CONNECTIONS_SECONDS")
        now = time.monotonic()
        found, stale = None, []
        with self._lock:
            # The most recently used first: the likeliest to be still open.
            for kept in reversed(self._idle):
                if now - kept.since > keep or not _quiet(kept.smtp):
                    stale.append(kept)
                elif kept.key == key and found is None:
                    found = kept
            taken = [*stale, found] if found is not None else stale
            self._idle = [kept for kept in self._idle if kept not in taken]
        for kept in stale:
            _close(kept.smtp)
        if found is None:
            return False
        backend.connection = found.smtp
        return True

    def give_back(self, backend):
        """Keep `backend`'s open connection for the next batch; the backend forgets it.
        With keeping off, or as many kept as a run holds lanes, it is closed instead."""
        smtp = backend.connection
        if smtp is None:
            return
        backend.connection = None
        if conf.get("EMAIL_KEEP_CONNECTIONS_SECONDS") <= 0 or not _quiet(smtp):
            _close(smtp)
            return
        limit = conf.get("EMAIL_MAX_CONNECTIONS")
        with self._lock:
            self._idle.append(_Kept(_key(backend), smtp, time.monotonic()))
            surplus = self._idle[: max(0, len(self._idle) - limit)]
            del self._idle[: len(surplus)]
        for kept in surplus:
            _close(kept.smtp)

    def close_expired(self):
        """Close the kept connections older than the keep time (a run's end)."""
        keep, now = conf.get("EMAIL_KEEP_CONNECTIONS_SECONDS"), time.monotonic()
        with self._lock:
            expired = [kept for kept in self._idle if now - kept.since > keep]
            self._idle = [kept for kept in self._idle if kept not in expired]
        for kept in expired:
            _close(kept.smtp)

    def close_all(self):
        """Close every kept connection, e.g. when the process exits: QUIT goes out on
        all of them before any reply is awaited, so closing 16 costs one round trip, not
        16."""
        with self._lock:
            idle, self._idle = self._idle, []
        quitting = []
        for kept in idle:
            try:
                kept.smtp.putcmd("quit")
                quitting.append(kept.smtp)
            except (smtplib.SMTPException, OSError):
                kept.smtp.close()
        for smtp in quitting:
            try:
                smtp.getreply()
            except (smtplib.SMTPException, OSError):
                pass
            smtp.close()

    def __len__(self):
        return len(self._idle)


def _close(smtp):
    """QUIT, or just close when the relay is gone."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


#: The process's kept connections.
pool = ConnectionPool()
atexit.register(pool.close_all)
