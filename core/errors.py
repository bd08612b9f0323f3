"""The tool's own faults, as exceptions.

A candidate that fails to build, crashes or is wrong is *data* (a status in a result record), never
an exception. These exceptions are for problems the user must fix: bad input files, a missing
toolchain, a reference that cannot run. The CLI turns each into one line and exit code 2.
"""

from __future__ import annotations


class KernelwrightError(Exception):
    """Base class for errors the user can act on; the message says what to do."""


class BadInput(KernelwrightError):
    """A problem or candidate file that cannot be used (missing, unparsable, incomplete)."""


class ToolchainMissing(KernelwrightError):
    """A compiler, ninja or a CUDA build of torch that the chosen target needs is absent."""
