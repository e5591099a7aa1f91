"""The `genlab` application object and its entry point.

Bad input never shows a traceback: every `GenlabError` (and TOML, validation and OS errors
on user files) is printed as one line on stderr and the exit status is 2; a diverged
training run exits with 1, Ctrl-C with 130. Command modules (`genlab.cli.run`,
`generate`, `bench`, `tools`) register their commands on `app` / `bench_app` and import what
they need (torch, the model code) inside the command, so that `genlab --help` and flag
errors answer at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from genlab.errors import ConfigError, GenlabError, TrainingDiverged

__all__ = ["app", "bench_app", "console", "main"]

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="genlab: deep generative models with one set of interfaces.",
)  # fmt: skip
bench_app = typer.Typer(no_args_is_help=True, help="Reproducible benchmark tables.")
app.add_typer(bench_app, name="bench")
console = Console(width=None if sys.stdout.isatty() else 160)  # tables unclipped in logs


def _version(value: bool) -> None:
    if value:
        from genlab.runs.record import genlab_version

        console.print(f"genlab {genlab_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """genlab: deep generative models with one set of interfaces."""


def _fail(message: str, status: int) -> None:
    print(" ".join(message.split()), file=sys.stderr)
    sys.exit(status)


def _usage_error(err: typer.TyperException) -> None:
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    status = int(getattr(err, "exit_code", 2))
    if type(err).__name__ == "NoArgsIsHelpError":  # `genlab` alone: the help text
        print(message, file=sys.stderr)
        sys.exit(status)
    _fail(f"error: {message} (see genlab --help)", status)


def _warn(message: Warning | str, category: type[Warning], *args: object, **kw: object) -> None:
    print(" ".join(f"warning: {message}".split()), file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `genlab` script; maps errors to one line and an exit status.
    Warnings are one line each too."""
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = _warn
        status = _run(argv)
    sys.exit(status if isinstance(status, int) else 0)


def _run(argv: list[str] | None) -> object:
    """Run the app; every error a user can fix ends the process with one line."""
    import pydantic

    from genlab.config.toml import tomllib

    try:
        return app(args=argv, prog_name="genlab", standalone_mode=False)
    except TrainingDiverged as err:
        _fail(f"training diverged: {err}", 1)
    except ConfigError as err:
        _fail(f"config error: {err}", 2)
    except GenlabError as err:
        _fail(f"error: {err}", 2)
    except pydantic.ValidationError as err:
        from genlab.config.errors import format_validation_error

        _fail(f"config error: {format_validation_error(err)}", 2)
    except tomllib.TOMLDecodeError as err:
        _fail(f"config error: invalid TOML: {err}", 2)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        _fail(f"error: {where}{err.strerror or err}", 2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as err:  # click's usage errors
        _usage_error(err)
    return 0
