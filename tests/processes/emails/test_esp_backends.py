"""The Anymail settings as a deployment reads them, in a fresh process (the backends
themselves are tested in-process in tests/emails/test_esp_backends.py)."""

from tests.processes.config.test_settings import PRODUCTION, settings_of


def test_anymail_settings_come_from_anymail_variables(tmp_path):
    values = settings_of(
        tmp_path,
        ["ANYMAIL", "INSTALLED_APPS", "EMAIL_BACKEND"],
        **PRODUCTION,
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN="token-from-env",
        ANYMAIL_IGNORE_RECIPIENT_STATUS="True",
        ANYMAIL_WEBHOOK_SECRET="user:pass",
    )

    assert values["ANYMAIL"] == {
        "POSTMARK_SERVER_TOKEN": "token-from-env",
        "IGNORE_RECIPIENT_STATUS": True,
        "WEBHOOK_SECRET": "user:pass",
    }
    assert values["EMAIL_BACKEND"] == "anymail.backends.postmark.EmailBackend"
    assert "anymail" in values["INSTALLED_APPS"]
