"""Errors a user can act on, each carrying the exit code the CLI returns.

Codes follow sysexits(3) so that systemd units and scripts can tell them apart
(the unit sets RestartPreventExitStatus=78: a bad config must not restart-loop).
"""

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2  # argparse's own code for bad command-line usage
EX_DATAERR = 65  # input data is wrong: corrupt model, unreadable image, integrity mismatch
EX_NOINPUT = 66  # an input file named on the command line does not exist
EX_UNAVAILABLE = 69  # a required resource is missing at start (model not fetched, no Edge TPU)
EX_SOFTWARE = 70  # an internal error: a bug (also: a stage of `edged run` died; systemd restarts it)
EX_CANTCREAT = 73  # an output cannot be written: disk full, read-only file system, permission denied
EX_CONFIG = 78  # bad configuration: config file, broker URL, certificate, credentials


class EdgedError(Exception):
    """An error with a one-line message for the user and a documented exit code."""

    exit_code = EX_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(EdgedError):
    """Bad configuration; the message names the key path or file and what was expected."""

    exit_code = EX_CONFIG


class UnavailableError(EdgedError):
    """A required resource (model file, accelerator, camera) is missing at start."""

    exit_code = EX_UNAVAILABLE


class DataError(EdgedError):
    """An input file exists but its content is wrong (corrupt model, bad image, digest mismatch)."""

    exit_code = EX_DATAERR


class NoInputError(EdgedError):
    """An input file named by the user does not exist or cannot be read."""

    exit_code = EX_NOINPUT


class CantCreateError(EdgedError):
    """An output file or directory cannot be written (disk full, read-only file system, no permission)."""

    exit_code = EX_CANTCREAT
