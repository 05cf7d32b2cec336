"""Entry point for Phusion Passenger: cPanel's "Setup Python App" and similar hosts.

Passenger imports this file from the application root and serves its `application`.
It makes the checkout importable, reads `.env` beside this file (values already in the
environment, such as those set in cPanel's form, win), and starts Django with
config.settings unless DJANGO_SETTINGS_MODULE says otherwise. docs/operations.md,
"Shared hosting with Passenger", has the steps.
"""

import os
import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

# Before DJANGO_SETTINGS_MODULE is read, so `.env` may set that too; settings.py reads the
# same file again for everything else (it never overrides what is already set).
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.wsgi import application  # noqa: E402

__all__ = ["application"]
