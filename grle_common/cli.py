"""The command-line convention of every entry point of the toolkit.

- A problem the user can fix (bad input, a missing or broken file, an output path that cannot
  be written) is raised as a :class:`UserError` subclass whose message is one sentence that
  says what to do. Library callers catch it like any exception.
- Each ``python -m ...`` module has ``main(argv=None)`` and ends with
  ``sys.exit(run_cli(main))``: a :class:`UserError` becomes the line ``error: <message>`` on
  stderr and exit status 2 (argparse's status for bad usage, which ``parser.error`` keeps for
  pure usage mistakes); Ctrl-C becomes one line and status 130.
- A config record is a dataclass whose fields are declared with :func:`option`: the default
  and a one-line help text (with units) in one place. :func:`add_dataclass_args` turns those
  fields into ``--flag-name`` options, so the command line cannot drift from the record.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class UserError(Exception):
    """An error the user can fix; the message is one sentence that says what to do.

    :func:`run_cli` prints it as ``error: <message>`` and returns exit status 2. Each package
    raises its own subclasses (``multiexit.errors.MultiexitError``,
    ``profiling.errors.ProfilingError``, ``offload.exit_table.ExitTableError``, ...).
    """


def run_cli(
    main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None
) -> int:
    """Run ``main(argv)`` and return the process's exit status.

    ``main`` returns its exit status as an int; any other result (``None``, rows) means 0. A
    :class:`UserError` prints ``error: <message>`` on stderr and gives 2; ``KeyboardInterrupt``
    prints ``interrupted`` and gives 130 (128 + SIGINT, the shell's convention). Anything else
    propagates with its traceback: it is a bug, not a user error.
    """
    try:
        result = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def option(
    default: Any,
    help: str,
    *,
    choices: Iterable[Any] | None = None,
    default_text: str | None = None,
) -> Any:
    """A dataclass field documented for the command line.

    Args:
        default: the field's default, and the flag's.
        help: one line, with units, shown by ``--help`` (followed by ``(default: ...)``).
        choices: the values the flag accepts (argparse ``choices``).
        default_text: what ``--help`` shows as the default, for a ``None`` that stands for a
            computed value (e.g. ``"50 on a GPU, 10 on the CPU"``).
    """
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if default_text is not None:
        metadata["default_text"] = default_text
    return dataclasses.field(default=default, metadata=metadata)


def _flag_type(name: str, hint: Any) -> type:
    """``bool``, ``int``, ``float`` or ``str`` from a field's type (``X | None`` gives X)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint in (bool, int, float, str):
        return hint
    raise TypeError(f"field {name!r} has type {hint!r}, which has no flag; exclude it.")


def add_dataclass_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Add one ``--flag-name`` option per field of the dataclass ``cls`` to ``parser`` (or to an
    argument group of it); returns the names of the fields added.

    The help text is the field's ``metadata["help"]`` (declare fields with :func:`option`)
    followed by ``(default: <default>)``; the default is the field's. A ``bool`` field becomes
    ``--flag/--no-flag`` (``argparse.BooleanOptionalAction``); ``int``, ``float`` and ``str``
    fields (or ``X | None``) take one value of that type; ``metadata["choices"]`` limits it.

    Raises:
        TypeError: a field (not in ``exclude``) has no help text, no default or another type.
    """
    skip = set(exclude)
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        if "help" not in f.metadata:
            raise TypeError(f"field {f.name!r} of {cls.__name__} has no help text; use option().")
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"field {f.name!r} of {cls.__name__} has no default.")
        default_text = f.metadata.get("default_text")
        shown = "%(default)s" if default_text is None else default_text.replace("%", "%%")
        text = f.metadata["help"].replace("%", "%%") + f" (default: {shown})"
        flag = "--" + f.name.replace("_", "-")
        kind = _flag_type(f.name, hints[f.name])
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        else:
            extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
            parser.add_argument(flag, type=kind, default=default, help=text, **extra)
        names.append(f.name)
    return names
