"""Run the console command's entry point in-process, as a user's shell would see it."""

from dataclasses import dataclass

import pytest

from tms_dropout.cli import main


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys, *args) -> Outcome:
    """tms-dropout ARGS: exit status, stdout and stderr."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except Exception as err:  # a traceback would reach the user: fail loudly
        pytest.fail(f"tms-dropout {' '.join(args)} raised {type(err).__name__}: {err}")
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)
