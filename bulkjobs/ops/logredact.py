"""A logging filter that keeps recipients' addresses out of the logs, whatever logs them.

Providers quote the recipient in their replies ("550 5.1.1 <jane@example.com>: User
unknown"), and those replies end up in log lines and exception messages. The filter is
installed on the handlers in config/settings.py LOGGING, so no code path can forget it:
the local part of every address in the formatted message and traceback becomes "…", the
domain stays (enough to see which provider refuses). Item reasons stored in the
database, shown to the company that sent the email, keep the full text.

Unsubscribe tokens are cut out of any URL path logged ("Not Found: /emails/unsubscribe/…/"):
a token is as good as the link, and links sent before tokens were encrypted carry the
address readable.
"""

import logging
import re

# A local part (RFC 5322 dot-atom characters; not starting with a quote, which is more
# often Python's repr around the address) followed by @ and a dotted domain.
_ADDRESS = re.compile(r"[\w.!#$%&*+/=?^`~-][\w.!#$%&'*+/=?^`~-]*@(?=[\w-]+(?:\.[\w-]+)+)")


_UNSUBSCRIBE_TOKEN = re.compile(r"(/unsubscribe/)[^/\s\"'?#]+")


def redact_addresses(text):
    """Replace the local part of every email address in text with an ellipsis, and every
    unsubscribe token in a URL path too."""
    return _UNSUBSCRIBE_TOKEN.sub("\\1…", _ADDRESS.sub("…@", text))


class RedactEmailAddresses(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        redacted = redact_addresses(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # What Formatter.format() would add, redacted; it uses exc_text when set.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_addresses(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_addresses(record.stack_info)
        return True
