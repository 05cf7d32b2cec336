"""The demo's public facts: its usernames and their password, which the README prints.

Shared by load_demo (which creates them) and the deploy check (which warns when any of
them can still sign in with that password on a production site).
"""

DEMO_PASSWORD = "demo-password"
#: The demo's users: the company admin, a member, the platform operator.
DEMO_USERNAMES = ("admin", "member", "operator")
