"""Logging filters: a refused request (4xx) is one log line, not a traceback.

Django logs a 403 (PermissionDenied) or a 400 (SuspiciousOperation) with the exception attached, so
every refused click printed a traceback as if something had broken. This filter, on the console
handler, turns those records into one line that names the reason; 5xx records keep their traceback.
"""

from __future__ import annotations

import logging


class OneLineClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is None or status >= 500 or not record.exc_info:
            return True
        exc = record.exc_info[1]
        message = record.getMessage()
        reason = str(exc).strip() if exc is not None else ""
        if reason and reason not in message:
            message = f"{message} ({reason})"
        record.msg, record.args = message, ()
        record.exc_info, record.exc_text = None, None
        return True
