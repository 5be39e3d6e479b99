"""The command-line convention of every entry point of the toolkit.

- A problem the user can fix (bad input, a missing or broken file, an output path that cannot
  be written) is raised as a :class:`UserError` subclass whose message is one sentence that
  says what to do. Library callers catch it like any exception.
- Each ``python -m ...`` module has ``main(argv=None)`` and ends with
  ``sys.exit(run_cli(main))``: a :class:`UserError` becomes the line ``error: <message>`` on
  stderr and exit status 2 (argparse's status for bad usage, which ``parser.error`` keeps for
  pure usage mistakes); Ctrl-C becomes one line and status 130.
- A config record is a dataclass whose fields are declared with :func:`option`: the default,
  a one-line help text (with units) and the valid range in one place. :func:`add_dataclass_args`
  turns those fields into ``--flag-name`` options, so the command line cannot drift from the
  record; a number outside its range is refused by argparse before any work, in one sentence
  that names the flag and the range (``argument --width: must be a number > 0 (got 0)``).
- A hand-written flag gets the same check from :func:`bounded` (``type=bounded(int, low=1)``);
  :func:`check_range` checks a value that did not come through argparse.
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
    ``profiling.errors.ProfilingError``, ``exit_tables.schema.ExitTableError``, ...).
    """


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The valid range of a number: ``low`` and ``high`` inclusive, or exclusive when
    ``low_open`` / ``high_open`` (``Bounds(0, low_open=True)`` is "> 0", ``Bounds(0, 1,
    high_open=True)`` is "≥ 0 and < 1"). ``None`` leaves a side open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self, kind: type = float, *, noun: bool = True) -> str:
        """``"an integer ≥ 1"``, ``"a number > 0 and ≤ 1"``, ... (the words of an error);
        without ``noun`` only the range (``"> 0 and ≤ 1"``, as ``--help`` shows it)."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {_fmt(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '≤'} {_fmt(self.high)}")
        words = " and ".join(parts)
        if not noun:
            return words
        name = "an integer" if kind is int else "a number"
        return f"{name} {words}" if parts else name

    def contains(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, flag: str, value: float, kind: type = float) -> None:
        """Raise :class:`UserError` ``"<flag> must be <range> (got <value>)."`` for a value
        outside the range."""
        if not self.contains(value):
            raise UserError(f"{flag} must be {self.describe(kind)} (got {value}).")


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def bounded(
    kind: type,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` (int or float) and refuses a value outside
    the range with ``must be <range> (got <value>)``; argparse prefixes the flag's name.

    Example: ``p.add_argument("--devices", type=bounded(int, low=1), nargs="+")``.
    """
    bounds = Bounds(low, high, low_open, high_open)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {bounds.describe(kind)} (got {text!r})"
            ) from None
        if not bounds.contains(value):
            raise argparse.ArgumentTypeError(f"must be {bounds.describe(kind)} (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def check_range(
    flag: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    kind: type = float,
) -> None:
    """Raise :class:`UserError` ``"<flag> must be <range> (got <value>)."`` for a value outside
    the range: the check of a value that did not come through argparse."""
    Bounds(low, high, low_open, high_open).check(flag, value, kind)


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
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A dataclass field documented for the command line.

    Args:
        default: the field's default, and the flag's.
        help: one line, with units, shown by ``--help`` (followed by ``(default: ...)``).
        choices: the values the flag accepts (argparse ``choices``).
        default_text: what ``--help`` shows as the default, for a ``None`` that stands for a
            computed value (e.g. ``"50 on a GPU, 10 on the CPU"``).
        low, high, low_open, high_open: the valid range of a number (:class:`Bounds`); the flag
            refuses any other value, and :func:`check_fields` checks a record built in code.
    """
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if default_text is not None:
        metadata["default_text"] = default_text
    if low is not None or high is not None:
        metadata["bounds"] = Bounds(low, high, low_open, high_open)
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
    followed by ``(default: <default>)``, or ``(<range>; default: <default>)`` for a field
    with a declared range (``(> 0; default: 1.0)``); the default is the field's. A ``bool`` field becomes
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
        flag = "--" + f.name.replace("_", "-")
        kind = _flag_type(f.name, hints[f.name])
        bounds = f.metadata.get("bounds")
        where = f"{bounds.describe(kind, noun=False)}; " if bounds else ""
        text = f.metadata["help"].replace("%", "%%") + f" ({where}default: {shown})"
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        else:
            extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
            parse: Any = kind
            if bounds is not None:
                parse = bounded(kind, **dataclasses.asdict(bounds))
            parser.add_argument(flag, type=parse, default=default, help=text, **extra)
        names.append(f.name)
    return names


def check_fields(record: Any) -> None:
    """Raise :class:`UserError` for the first field of a dataclass instance outside the range
    its :func:`option` declared (``None`` passes): the same sentence as the flag's."""
    for f in dataclasses.fields(record):
        bounds = f.metadata.get("bounds")
        value = getattr(record, f.name)
        if bounds is None or value is None or isinstance(value, bool):
            continue
        kind = int if isinstance(value, int) else float
        bounds.check("--" + f.name.replace("_", "-"), value, kind)
