"""`tms-dropout paper`: build the paper."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def group():
    """The paper: every run, figure and number rebuilt from the code."""


@group.command("build")
@click.option(
    "--quick", is_flag=True, help="Reduced grids and seeds (marked on every page); minutes, not an hour."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/paper"),
    show_default=True,
    help="Folder for the runs, figures, paper.html, paper.pdf and the table of numbers.",
)
@click.option("--no-pdf", is_flag=True, help="Skip the PDF (printed by a headless Chromium when found).")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Runs to run at once, the longest first, each with its share of the cores (numba, OpenMP and BLAS "
    "threads capped); 1: one after another, each on every core. [default: 2; 1 on a one-core machine]",
)
def build_command(quick: bool, out: Path, no_pdf: bool, jobs: int | None):
    """Run or reuse every run the text needs, draw its figures, write OUT/paper.html and OUT/paper.pdf.

    Runs are cached in OUT/runs by command, inputs and code: nothing reruns when nothing changed.
    With --quick the files are paper-quick.html, paper-quick.pdf, numbers-quick.md.
    """
    from paper.build import build
    from paper.runs import RunFailed

    try:
        result = build(out, quick=quick, pdf=not no_pdf, jobs=jobs)
    except RunFailed as error:
        raise click.ClickException(str(error)) from None
    reused = sum(r.reused for r in result.runs.values())
    click.echo(
        f"{len(result.runs)} runs ({reused} reused), {result.n_numbers} numbers, {result.seconds:.0f} s"
    )
    ran = sorted((r for r in result.runs.values() if not r.reused), key=lambda r: -r.seconds)
    if ran:
        click.echo("runs that ran, longest first (seconds; CPU seconds):")
        for r in ran:
            cpu = "" if r.cpu_seconds is None else f"; {r.cpu_seconds:.0f}"
            click.echo(f"  {r.run.name}: {r.seconds:.0f}{cpu}")
    click.echo(f"wrote {result.html}")
    if result.pdf:
        click.echo(f"wrote {result.pdf}")
    click.echo(f"wrote {result.numbers}")
