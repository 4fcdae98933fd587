"""Keeping stream credentials out of everything framescope writes or prints.

``rtsp://user:pass@camera/stream`` is how cameras are addressed, and the password must never reach an error
message, a log line, the console, ``config.yaml``, ``summary.json`` or a report. :func:`redact` replaces the
password of every URL in a text (``rtsp://user:***@camera/stream``), and the values of query parameters that
carry secrets (``?token=***``); the sources keep the real URL to connect with. Redaction is applied where text
leaves the process (the error type, the run directory writer, the console and the log handler), so a message
built anywhere, by framescope or by a library it calls, is covered.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_USERINFO = re.compile(
    r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:'\"<>]*):(?P<secret>[^\s/'\"<>]*)@",
)
"""``scheme://user:password@``: the password runs to the last ``@`` of the authority (cameras' passwords
often hold an unencoded ``@``, and FFmpeg splits at the last one)."""
_SECRET_PARAMETER = re.compile(
    r"(?P<prefix>[?&;](?:password|passwd|pwd|pass|token|access_token|auth|api_?key|key|secret|signature|sig)"
    r"=)(?P<secret>[^&;#\s'\"<>]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URL password and secret query value replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['prefix']}:{MASK}@" if m["secret"] else m[0], text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m['prefix']}{MASK}", text)


def redact_value(value: Any) -> Any:
    """A copy of ``value`` (strings inside dicts, lists and tuples) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value
