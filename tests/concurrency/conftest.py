"""Fixtures of the concurrency tests."""

import threading

import pytest
from django.db.backends.signals import connection_created


@pytest.fixture
def thread_connections():
    """Database connections opened by threads other than the test's, as they are made."""
    opened = []
    main = threading.get_ident()

    def note(sender, connection, **kwargs):
        if threading.get_ident() != main:
            opened.append(connection)

    connection_created.connect(note)
    yield opened
    connection_created.disconnect(note)
