"""The wallet fixtures of tests/wallet/conftest.py, for the wallet tests that start
processes (a conftest's fixtures reach only its own folder and below)."""

from tests.wallet.conftest import (  # noqa: F401
    apns_server,
    apple,
    chain,
    chain_files,
    google,
    google_off,
    issued,
)
