"""Benchmark: what a PassKit refresh or a download costs now that every path builds the
card's pass before serving the stored one (wallet/apple/store.py).

Run: DJANGO_SETTINGS_MODULE=config.settings .venv/bin/python -m bench.bench_pass_refresh [n]

Two figures, no database and no HTTP: an unchanged card (build pass.json, both
pass.strings and the manifest, then compare hashes: what most refreshes cost) and a
changed card (the same plus signing and zipping: what the one refresh after an edit
costs). Company images are cached per company, as in a running process.
"""

import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path


def bench_pass_refresh(count=300):
    import django

    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    django.setup()
    from django.test.utils import override_settings

    from cards.models import BusinessCard, Company
    from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID, apple_settings
    from wallet.apple import conf, pkpass
    from wallet.apple.devcerts import make_chain, write_chain
    from wallet.models import CardWalletState

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_chain(make_chain(TEAM_ID, PASS_TYPE_ID), Path(tmp))
        with override_settings(**apple_settings(paths, apns=False)):
            material = conf.signing_material()
            figures = {}
            for language in ("en", "de"):
                company = Company(pk=1, name="Acme", slug="acme", language=language)
                card = BusinessCard(
                    pk=1,
                    company=company,
                    public_id=uuid.uuid4(),
                    full_name="Ada Lovelace",
                    job_title="Engineer",
                    email="ada@example.com",
                    phone="+49 30 1234567",
                    website="https://example.com",
                    address="Somewhere 1\nBerlin",
                )
                state = CardWalletState(card=card)
                pkpass.build(card, state)  # warm the image cache
                started = time.perf_counter()
                for _ in range(count):
                    pkpass.build(card, state).content_hash  # noqa: B018
                unchanged = (time.perf_counter() - started) / count * 1000
                started = time.perf_counter()
                for _ in range(count):
                    built = pkpass.build(card, state)
                    pkpass.package(built, pkpass.sign(built.manifest, material))
                changed = (time.perf_counter() - started) / count * 1000
                figures[language] = (unchanged, changed)
                print(
                    f"{language}: unchanged card {unchanged:.2f} ms per refresh, "
                    f"changed card (build + sign + zip) {changed:.2f} ms"
                )
    return figures


if __name__ == "__main__":
    bench_pass_refresh(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
