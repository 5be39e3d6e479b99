"""The one error type the profiling package shows to users."""

from grle_common.cli import UserError, run_cli  # noqa: F401 - run_cli: kept importable here


class ProfilingError(UserError):
    """Bad input or environment: the message is one sentence that says what to do.

    The command-line entry points print it as ``error: <message>`` and exit with status 2
    (:func:`grle_common.cli.run_cli`); library callers can catch it like any exception.
    A fault in an exit table is :class:`exit_tables.schema.ExitTableError`, another
    :class:`~grle_common.cli.UserError` that the same entry points print the same way.
    """
