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
