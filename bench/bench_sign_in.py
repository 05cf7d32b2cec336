"""Benchmark: what one sign-in attempt costs with production hashing (PBKDF2), before and
after the address is locked out by config/signin.py.

Run: .venv/bin/python -m bench.bench_sign_in [attempts]

One client address tries random usernames with wrong passwords through Django's test
client (the sign-in form, as an attacker would): each attempt until the address's limit
(LOGIN_ADDRESS_FAILURE_LIMIT) hashes a password, even for an unknown username; after it,
the attempt is refused before any hashing. Prints the median CPU and wall milliseconds
per attempt of each phase, and how many attempts per second would then saturate one
core. Not a test.
"""

import os
import statistics
import sys
import time

from bench.bench_dashboard import setup_django


def main(attempts=40):
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("LOGIN_ADDRESS_FAILURE_LIMIT", "20")
    setup_django("bench-sign-in", reuse=False)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    print(f"hasher: {settings.PASSWORD_HASHERS[0].rsplit('.', 1)[-1]}")
    get_user_model().objects.create_user("real", password="a-long-real-password")
    client = Client()
    phases = {"hashed": [], "refused before hashing": []}
    for n in range(attempts):
        cpu, wall = time.process_time(), time.perf_counter()
        response = client.post(
            reverse("login"),
            {"username": f"guess{n}", "password": "wrong"},
            REMOTE_ADDR="203.0.113.66",
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        phase = "refused before hashing" if response.status_code == 429 else "hashed"
        phases[phase].append((cpu * 1000, wall * 1000))
    for phase, figures in phases.items():
        if not figures:
            continue
        cpu = statistics.median(c for c, _w in figures)
        wall = statistics.median(w for _c, w in figures)
        print(
            f"{phase:>24}: {len(figures):3d} attempts, median {cpu:7.1f} ms CPU, "
            f"{wall:7.1f} ms wall; one core saturated at {1000 / cpu:,.0f} attempts/s"
        )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
