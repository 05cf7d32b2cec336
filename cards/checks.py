"""Deploy check: no user of the demo (load_demo) still signs in with its public password.

Only the demo's usernames are looked at, so the check costs at most three password
hashes, whatever the number of users.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core import checks
from django.db import DatabaseError

from .demo import DEMO_PASSWORD, DEMO_USERNAMES


@checks.register(checks.Tags.security, deploy=True)
def check_demo_passwords(app_configs, **kwargs):
    try:
        users = list(
            get_user_model()
            .objects.filter(username__in=DEMO_USERNAMES, is_active=True)
            .values_list("username", "password")
        )
    except (DatabaseError, RuntimeError):
        # No database yet (before migrate), or none to reach (a test without database
        # access raises RuntimeError): no users to warn of, and `check` itself goes on.
        return []
    # hashers.check_password, not user.check_password: a check must not rehash and save.
    exposed = sorted(name for name, hashed in users if check_password(DEMO_PASSWORD, hashed))
    if not exposed:
        return []
    return [
        checks.Warning(
            f"The demo user(s) {', '.join(exposed)} sign in with the public demo password "
            f"'{DEMO_PASSWORD}'.",
            hint=(
                "Change their passwords (manage.py changepassword <username>) or remove them; "
                "load_demo is for development only."
            ),
            id="cards.W001",
        )
    ]
