"""The Content-Security-Policy header, and templates the policy lets through unchanged.

tests/browser/test_browser.py checks in a real browser that the pages report no violation.
"""

import re
from pathlib import Path

from django.urls import reverse

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
# Inline code the policy blocks: a <script> without src, a style attribute or element,
# an on...= event handler, a javascript: URL.
INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE
)


def test_every_page_response_carries_the_policy(client, settings):
    response = client.get(reverse("login"))

    policy = response["Content-Security-Policy"]
    assert policy == settings.CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_an_empty_setting_sends_no_header(client, settings):
    settings.CONTENT_SECURITY_POLICY = ""

    assert "Content-Security-Policy" not in client.get(reverse("login"))


def test_page_templates_have_no_inline_code():
    """Email templates are exempt: mail clients need inline styles and ignore the header."""
    offenders = [
        f"{path.relative_to(TEMPLATES)}:{number}: {line.strip()}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        if not path.name.startswith("card_email")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INLINE_CODE.search(line)
    ]

    assert offenders == []
