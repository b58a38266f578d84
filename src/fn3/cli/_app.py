"""The typer application and the error policy shared by every command."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from fn3.errors import Fn3Error

# `fn3 --help` lists the commands in the order a user meets them, whatever order they were defined in.
COMMAND_ORDER = ("demo", "train", "eval", "info", "search", "export", "bench", "latency-table")


class _OrderedGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


app = typer.Typer(
    cls=_OrderedGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="fn3: train one Fully Nested Neural Network, deploy every budget.",
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False)


def version() -> str:
    """The installed fn3 version (``fn3 --version``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("fn3")
    except PackageNotFoundError:  # run from a source tree that was not pip-installed
        import fn3

        return fn3.__version__


def _print_version(value: bool) -> None:
    if value:
        console.print(f"fn3 {version()}", markup=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """fn3: train one Fully Nested Neural Network, deploy every budget."""


def fail(message: str) -> typer.Exit:
    """Print a one-line user error and return the exit to raise (code 2)."""
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(2)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fn3`` console script and ``python -m fn3``."""
    import fn3.cli  # noqa: F401  (registers the commands)
    from fn3 import distributed

    try:
        # Without standalone mode, typer turns Ctrl-C (KeyboardInterrupt) and an explicit
        # `raise typer.Exit(code)` into a *returned* exit code instead of raising.
        rv = app(args=argv, prog_name="fn3", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
            if rv == 130:
                err_console.print("interrupted", markup=False)
            return rv
    except Fn3Error as err:
        err_console.print(f"error: {err}", markup=False)
        return 2
    except typer.Exit as ex:
        return ex.exit_code
    except typer.Abort:
        err_console.print("aborted", markup=False)
        return 130
    except typer.TyperException as err:
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
            console.print(ctx.get_help(), markup=False)
            return 2
        # A bad flag, a missing argument, a non-numeric value: one line, exit 2.
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err_console.print(f"error: {err.format_message()}{hint}", markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return 130
    except Exception as err:  # noqa: BLE001  (anything else is a bug: say so, exit 1)
        err_console.print(f"internal error: {type(err).__name__}: {err}", markup=False)
        err_console.print(
            "this is a bug in fn3; please report it with the command you ran "
            "(set FN3_DEBUG=1 to see the traceback)",
            markup=False,
        )
        import os

        if os.environ.get("FN3_DEBUG"):
            raise
        return 1
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
