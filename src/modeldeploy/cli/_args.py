"""Pieces every subcommand of the ``modeldeploy`` command shares."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, TypeAlias

__all__ = [
    "Commands",
    "StartError",
    "UsageError",
    "configure_logging",
    "integer",
    "port",
    "positive",
]

Commands: TypeAlias = "argparse._SubParsersAction[Any]"
"""What ``add_subparsers()`` returns; each command module adds its parser to it."""


class UsageError(Exception):
    """A problem with the command line; main() prints it as one line and exits 2."""


class StartError(Exception):
    """A server that cannot start (a port taken); main() logs it as one line and exits 1."""


def configure_logging(level: str) -> None:
    """Log to stderr at *level* (a name such as ``"info"``), modeldeploy's loggers included."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("modeldeploy").setLevel(level.upper())


def port(text: str) -> int:
    """An argparse type: a TCP port number."""
    value = integer(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return value


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def integer(text: str) -> int:
    """An argparse type: an integer, with a message argparse shows as it is."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
