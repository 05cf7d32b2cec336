"""Settings for the test suite: the project's own settings, as a plain-HTTP deployment.

Production refuses to start without DJANGO_SECRET_KEY, so a test session makes a random
one. It goes into the environment (not only into these settings) because the tests also
start `manage.py` subprocesses, which must sign and verify with the same key. The test
client and the live test server speak plain HTTP, so the HTTPS-only switches are off;
tests/config/ checks their production defaults.
"""

import os
import secrets

for name, value in {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_SESSION_COOKIE_SECURE": "false",
    "DJANGO_CSRF_COOKIE_SECURE": "false",
}.items():
    os.environ.setdefault(name, value)

from config.settings import *  # noqa: E402, F403

# Most tests run inside one transaction, which a run's worker threads (each with its own
# database connection) could not see: runs serve one company at a time unless a test asks
# for more (tests/concurrency/ uses transactional tests and threads for that,
# tests/processes/ real processes).
# The same holds for a batch's lanes (several provider connections at once).
BULKJOBS = {  # noqa: F405
    "EMAIL_CONCURRENCY": "1",
    "WALLET_CONCURRENCY": "1",
    "EMAIL_CONNECTIONS": "1",
    "WALLET_CONNECTIONS": "1",
    **BULKJOBS,  # noqa: F405
}

# The tests create many users (personas in most tests), and Django's default PBKDF2 hasher
# is slow on purpose (about 1.8 s per user on a small shared machine). MD5 is fast and is
# only ever used here; production keeps Django's default, PBKDF2 (tests/processes/config/
# test_settings.py checks that).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
