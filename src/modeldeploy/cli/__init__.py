"""
The ``modeldeploy`` command.

.. code-block:: console

    $ modeldeploy serve modeldeploy.demo:service --port 8000
    $ modeldeploy serve myapp:service --server gunicorn --workers 2 --grpc-port 8001
    $ modeldeploy dashboard --title "Iris" > dashboard.json
    $ modeldeploy alert-rules --job iris > rules.yml

Each subcommand lives in a module of this package that offers
``add_parser(commands)``: it adds its parser and sets ``run``, a function of the
parsed options that returns the exit status. :func:`main` parses and runs.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Final

from .._version import __version__
from ..errors import ModelDeployError
from . import models, nginx, observe, serve
from ._args import StartError, UsageError
from .serve import SERVERS, as_app, resolve

__all__ = ["SERVERS", "as_app", "build_parser", "main", "resolve"]

logger = logging.getLogger("modeldeploy.cli")

_EXIT_USAGE: Final = 2

# the subcommands, in the order --help lists them
_COMMANDS: Final = (serve, models, observe, nginx)


def build_parser() -> argparse.ArgumentParser:
    """
    Return the parser of the ``modeldeploy`` command and its subcommands.

    .. versionadded:: 0.1.0
    """
    parser = argparse.ArgumentParser(
        prog="modeldeploy",
        description="Turn a trained model into a fast, safe, observable service.",
        epilog="Run 'modeldeploy COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``modeldeploy`` command.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 after a clean stop, 2 for a usage error (a bad
        option, a ``SPEC`` that cannot be served), 1 when a server failed.

    .. versionadded:: 0.1.0
    """
    parser = build_parser()
    options = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = options.run
    try:
        return run(options)
    except UsageError as exc:
        print(f"modeldeploy {options.command}: error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except StartError as exc:
        logger.error("cannot serve: %s", exc)
        return 1
    except ModelDeployError as exc:
        # a model that fails to load: the operator needs the cause, traceback included
        logger.error("cannot serve: %s", exc.message, exc_info=exc)
        return 1
