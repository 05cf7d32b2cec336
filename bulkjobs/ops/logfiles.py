"""The log file's handler: a rotating file that a full disk cannot turn into tracebacks.

logging's own handlers print a traceback to stderr for every line they fail to write, so
a full disk (which usually holds the log file and the SQLite database alike) floods
stderr, and cron's mail or the journal, with tracebacks while the processor waits for
space. This one says so once, in one line, and again once writing works again; the
console handler goes on carrying every line meanwhile.
"""

import sys
from logging.handlers import RotatingFileHandler


class LogFileHandler(RotatingFileHandler):
    """RotatingFileHandler that reports a file it cannot write once, not per line."""

    #: True while the file cannot be written (reported once).
    failing = False

    def emit(self, record):
        self._failed_now = False
        super().emit(record)
        if self.failing and not self._failed_now:
            self.failing = False
            sys.stderr.write(f"Logging: {self.baseFilename} is written again.\n")

    def handleError(self, record):  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self._failed_now = True
        if not self.failing:
            self.failing = True
            sys.stderr.write(
                f"Logging: {self.baseFilename} cannot be written ({error.strerror or error}); "
                "log lines go to the console only until it can.\n"
            )
