"""Debian's chromium, driven through Playwright, for the browser tests. The folder gives
its tests the `browser` marker (tests/conftest.py)."""

import os

import pytest
from django.db import connections

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def chromium_path():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing on CI; install the Debian chromium package.")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium) - browser test skipped.")
    return CHROMIUM


@pytest.fixture
def browser(chromium_path, monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # between browser steps are ordinary synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        # While Playwright's loop runs, Django keeps the test's ORM connections in
        # context-local storage; close them here or they outlive the test database.
        connections.close_all()
        browser.close()
