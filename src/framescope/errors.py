"""Errors a user can fix.

Every problem caused by the user's input (a flag, a file, a stream, the machine's devices) is raised as a
:class:`FramescopeError` whose message is one line naming the problem and the fix. The CLI prints that line
and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C so ``timeout``, systemd or Kubernetes stopping a run keep its summary."""


class FramescopeError(Exception):
    """A problem with the user's input or environment, with a one-line message that says how to fix it.

    The message never carries a password: stream URLs in it are redacted (``rtsp://user:***@host``)."""

    exit_code = 2

    def __init__(self, message: str = "", *args: object) -> None:
        from framescope._secrets import redact

        super().__init__(redact(str(message)), *args)


class ConfigError(FramescopeError, ValueError):
    """A configuration value is invalid (bad flag value, inconsistent flags, bad YAML)."""


class SourceError(FramescopeError):
    """An input could not be opened or read (missing file, corrupt video, unreachable stream)."""


class ModelError(FramescopeError):
    """A model could not be built or loaded (unknown name, bad weights, unsupported task)."""


class DeviceError(FramescopeError):
    """A requested device or CPU binding is not available on this machine."""


class OutputError(FramescopeError):
    """The run directory cannot be created or written."""


class OutputSpaceError(OutputError):
    """The run directory's filesystem is full, or a disk quota or file-size limit was reached (ENOSPC,
    EDQUOT, EFBIG). Rows written before it stay whole on disk; the message says how many."""


class OutOfMemory(FramescopeError):
    """The batch did not fit in the device's (or the host's) memory. An experiment records it as the outcome
    of that configuration (``oom``) and goes on."""
