"""The one error type the profiling package shows to users."""


class ProfilingError(Exception):
    """Bad input or environment: the message is one sentence that says what to do.

    The command-line entry points print it as ``error: <message>`` and exit with status 2;
    library callers can catch it like any exception.
    """


def run_cli(main, argv=None) -> int:  # noqa: ANN001 - small shared helper for the entry points
    """Run ``main(argv)``; a :class:`ProfilingError` becomes ``error: <message>`` on stderr and
    exit status 2 (argparse's status for bad usage)."""
    import sys

    try:
        return int(main(argv) or 0)
    except ProfilingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
