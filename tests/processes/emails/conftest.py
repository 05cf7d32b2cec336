"""Fixtures of the tests that run a private Postfix."""

import os

import pytest


@pytest.fixture
def usual_umask():
    """The umask Postfix is started with on a normal system (022). The app's FILE_UMASK
    (027, set when the settings load) would leave the instance's configuration and the
    queue directories postfix-script creates unreadable to Postfix's own daemons, which
    run as the postfix user ("open directory defer: Permission denied")."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)
