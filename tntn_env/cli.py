"""The package's command lines, one argument library (tyro, as the trainers): each command is a
``@dataclass`` of arguments with a one-line docstring per field, parsed by :func:`parse`.

Conventions: ``field_name`` -> ``--field-name``; a ``bool`` field defaulting to False is a plain
flag (``--overwrite``; no ``--no-`` pair); repeatable options are
``Annotated[tuple[str, ...], tyro.conf.UseAppendAction]``; trainer flags after ``--`` are split off
before parsing (:func:`split_passthrough`). Bad arguments exit with code 2 and a message naming
the flag, before anything runs. Modules defining an ``Args`` do not use ``from __future__ import
annotations``: tyro then reads real types, also when the module runs as ``__main__`` (runpy).
"""

from __future__ import annotations

import sys
from typing import TypeVar

import tyro

T = TypeVar("T")


def parse(cls: type[T], argv, prog: str, description: str | None = None) -> T:
    """Parse ``argv`` (None: ``sys.argv[1:]``) into the dataclass ``cls``."""
    if description:
        description = " ".join(description.split())
    return tyro.cli(cls, args=list(sys.argv[1:] if argv is None else argv), prog=prog,
                    description=description, config=(tyro.conf.FlagCreatePairsOff,))


def usage_error(prog: str, message: str):
    """Refuse a bad argument found after parsing: the message on stderr, exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def split_passthrough(argv) -> tuple[list[str], list[str]]:
    """Split a command line at the first ``--``: (the command's own args, trainer flags)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []
