"""`tms-dropout`: one subcommand group per layer."""

from __future__ import annotations

import sys

import click

from compare.cli import group as compare_group
from paper.cli import group as paper_group
from sim.cli import group as sim_group
from theory.cli import group as theory_group
from theory.errors import InputError


@click.group()
@click.version_option(package_name="tms-dropout")
def cli():
    """How dropout changes superposition: exact theory beside simulation."""


cli.add_command(theory_group, "theory")
cli.add_command(sim_group, "sim")
cli.add_command(compare_group, "compare")
cli.add_command(paper_group, "paper")


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends in one 'error: ...' line and exit status 2."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except InputError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
