"""Errors a wallet platform client raises; the wallet job kind maps them to item outcomes."""


class WalletError(Exception):
    """Base class; str(error) is the reason shown to users (no secrets in it)."""


class TransientError(WalletError):
    """Try again later (HTTP 429, 5xx, timeouts). retry_after is seconds, when the provider said."""

    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        self.retry_after = retry_after


class Unreachable(TransientError):
    """No connection to the provider at all (refused, DNS, connect timeout): every request
    of the batch would fail the same way, so the batch pauses without spending the cards'
    attempts, as a mail server refusing connections does. A connection lost after a
    request was sent, or an answer that does not come in time, is a plain TransientError:
    the card is retried and the batch goes on."""


class PermanentError(WalletError):
    """Will not succeed by retrying (HTTP 4xx other than 429, bad card data)."""


class NotConfigured(WalletError):
    """The platform's settings are missing; the message names them."""


class ProviderError(WalletError):
    """The provider refused our credentials or configuration (a revoked key, a wrong
    topic): every request would fail alike until a setting is fixed, so the batch pauses
    instead of failing each card. The message names the setting to check."""
