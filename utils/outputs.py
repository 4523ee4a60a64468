"""Output locations checked before any work: a run must not compute for hours and then fail to write."""
from __future__ import annotations

import os
import tempfile

from utils.errors import UsageError


def probe_output_dir(directory: str, flag: str) -> None:
    """Create ``directory`` if needed and write (then remove) a probe file in it; refuse with one line if
    that is impossible (a regular file in the way, no permission, a read-only disk)."""
    existing = os.path.abspath(directory)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag} {directory}: {existing} is a file, not a directory; choose another path")
    try:
        os.makedirs(directory, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        os.close(handle)
        os.remove(probe)
    except OSError as err:
        raise UsageError(f"{flag} {directory}: cannot write there ({err.strerror or err}); "
                         "choose a writable directory") from None


def probe_output_file(path: str, flag: str) -> None:
    """A file to be written at the end of the run: its folder must be writable and the path not a folder."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory; give a file name, e.g. {os.path.join(path, 'result.json')}")
    probe_output_dir(os.path.dirname(os.path.abspath(path)), flag)
