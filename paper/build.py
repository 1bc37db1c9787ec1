"""Build the paper: runs, figures, text, HTML, PDF and the table of numbers."""

from __future__ import annotations

import base64
import html
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import xarray as xr

from paper import quantities
from paper.figures import FIGURES
from paper.numbers import Number, NumberTable, format_value, typed_numbers
from paper.render import find_browser, headings, markdown, print_pdf
from paper.runs import RUNS_FILE, Data, RunOutput, load_runs
from sim.results import code_version
from theory.errors import InputError
from theory.storage import save_text

SOURCE = Path(__file__).resolve().parent / "source"
#: What a `num` expression may call besides numpy, xarray and paper.quantities.
SAFE_BUILTINS = {
    f.__name__: f for f in (abs, all, any, bool, float, int, len, max, min, round, slice, str, sum)
}


@dataclass
class BuildResult:
    html: Path
    pdf: Path | None
    numbers: Path
    runs: dict[str, RunOutput]
    n_numbers: int
    seconds: float


def check_sources(sections: list[Path]) -> None:
    """Fail on any number typed into a section instead of coming from a Dataset."""
    problems = [f"{path}: {t}" for path in sections for t in typed_numbers(path.read_text())]
    if problems:
        raise InputError(
            "numbers typed into the paper's source (write them with num(...) from a Dataset):\n  "
            + "\n  ".join(problems)
        )


class Paper:
    """The template's functions for one rendering: numbers, figures, commands."""

    def __init__(self, data: Data, figures: Path, md, order: list[str], images: dict[str, str] | None = None):
        self.data = data
        self.quick = data.quick
        self.claims: list[tuple[str, str, str, bool]] = []
        self.figures_dir = figures
        self.md = md
        self.table = NumberTable()
        self.order = order  # figure names in the order they appear (from the previous pass)
        self.seen: list[str] = []
        self.referenced: set[str] = set()
        self._images: dict[str, str] = {} if images is None else images  # name -> base64 PNG, drawn once

    # numbers
    def _evaluate(self, alias: str, expression: str, role: str):
        namespace = {"__builtins__": SAFE_BUILTINS, "ds": self.data[alias], "np": np, "xr": xr}
        namespace.update(quantities.HELPERS)
        try:
            # The paper's own source is trusted; only SAFE_BUILTINS are reachable.
            return eval(expression, namespace)
        except Exception as error:
            raise InputError(f"{role}({alias!r}, {expression!r}): {type(error).__name__}: {error}") from error

    def claim(self, alias: str, expression: str, statement: str) -> str:
        """A statement of the text held against its Dataset: `expression` must be true. Prints nothing.

        A false claim fails a full build; a quick build (coarse grids, few seeds) lists it on the page.
        """
        value = self._evaluate(alias, expression, "claim")
        holds = bool(np.all(np.asarray(value)))
        self.claims.append((statement, alias, expression, holds))
        if not holds and not self.quick:
            raise InputError(f"claim not supported by {alias}: {statement} ({expression} is false)")
        return ""

    def num(self, alias: str, expression: str, spec: str = ".3g") -> str:
        value = self._evaluate(alias, expression, "num")
        try:
            text, scalar = format_value(value, spec)
        except InputError as error:
            raise InputError(f"num({alias!r}, {expression!r}, {spec!r}): {error}") from error
        out = self.data.output(alias)
        dataset = str(out.datasets[alias].relative_to(self.data.folder))
        return self.table.add(Number(text, scalar, alias, expression, dataset, out.command))

    def problem(self, alias: str) -> str:
        """'n in m' for a Dataset's problem, both numbers recorded."""
        n = self.num(alias, "ds.sizes['feature'] if 'feature' in ds.sizes else ds.attrs['n_features']", "d")
        m = self.num(alias, "ds.sizes['hidden'] if 'hidden' in ds.sizes else ds.attrs['n_hidden']", "d")
        return f"{n} in {m}"

    def command(self, alias: str) -> str:
        """The command that wrote the alias's Dataset, as a code span."""
        return f"`{self.data.output(alias).command}`"

    # figures
    def fig(self, name: str) -> str:
        """'Figure k' for a figure placed anywhere in the text."""
        if name not in FIGURES:
            raise InputError(f"no figure {name!r} in paper.figures (there are {sorted(FIGURES)})")
        self.referenced.add(name)
        return f"Figure {self.order.index(name) + 1}" if name in self.order else "Figure ?"

    def figure(self, name: str, caller) -> str:
        if name not in FIGURES:
            raise InputError(f"no figure {name!r} in paper.figures (there are {sorted(FIGURES)})")
        if name in self.seen:
            raise InputError(f"figure {name!r} is placed twice")
        self.seen.append(name)
        if name not in self._images:
            path = self.figures_dir / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            FIGURES[name](self.data, path)
            self._images[name] = base64.b64encode(path.read_bytes()).decode()
        caption = self.md.renderInline(" ".join(caller().split()))
        number = len(self.seen)
        return (
            f'<figure id="fig-{name}"><img src="data:image/png;base64,{self._images[name]}" '
            f'alt="Figure {number}: {html.escape(name)}"><figcaption><b>Figure {number}.</b> {caption}'
            "</figcaption></figure>\n"
        )


def _render(env: jinja2.Environment, sections: list[Path], paper: Paper) -> str:
    context = {
        "num": paper.num,
        "claim": paper.claim,
        "problem": paper.problem,
        "command": paper.command,
        "figure": paper.figure,
        "fig": paper.fig,
        "quick": paper.quick,
    }
    return "\n\n".join(env.get_template(f"sections/{p.name}").render(**context) for p in sections)


def build(
    out: Path = Path("runs/paper"),
    quick: bool = False,
    pdf: bool = True,
    source: Path = SOURCE,
    runs_file: Path = RUNS_FILE,
    jobs: int | None = None,
) -> BuildResult:
    """Run or reuse every run the text needs, draw the figures, write OUT/paper.html (and .pdf).

    `source` holds page.html.j2, style.css and sections/*.md; `runs_file` the runs (paper/runs.toml);
    `jobs` runs that many runs at once (None: paper.runs.DEFAULT_JOBS).
    """
    start = time.perf_counter()
    out = Path(out)
    sections = sorted((source / "sections").glob("*.md"))
    if not sections:
        raise InputError(f"no sections in {source / 'sections'}")
    check_sources(sections)
    runs = load_runs(runs_file)
    data = Data(runs, out, quick)
    data.prepare(jobs)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(source),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    md = markdown()
    figures = out / ("figures-quick" if quick else "figures")
    first = Paper(data, figures, md, order=[])
    _render(env, sections, first)
    paper = Paper(data, figures, md, order=first.seen, images=first._images)
    text = _render(env, sections, paper)
    unplaced = sorted(paper.referenced - set(paper.seen))
    if unplaced:
        raise InputError(f"figures referred to but never placed: {', '.join(unplaced)}")
    unused = sorted(set(runs) - set(data.used))
    if unused:
        raise InputError(f"runs in {runs_file} that the text never reads: {', '.join(unused)}")

    body = md.render(text)
    numbers_md = paper.table.markdown()
    suffix = "-quick" if quick else ""
    page = env.get_template("page.html.j2").render(
        body=body,
        contents=headings(md, text),
        numbers=md.render(paper.table.markdown(commands=False)),
        runs=[data.outputs[name] for name in data.used],  # in the order the text reads them
        n_numbers=len(paper.table.numbers),
        failed_claims=[c for c in paper.claims if not c[3]],
        n_claims=len(paper.claims),
        quick=quick,
        version=code_version(),
        style=(source / "style.css").read_text(),
    )
    html_path = save_text(page, out / f"paper{suffix}.html")
    numbers_path = save_text(numbers_md, out / f"numbers{suffix}.md")
    save_text(paper.table.csv(), out / f"numbers{suffix}.csv")
    pdf_path = None
    if pdf:
        browser = find_browser()
        if browser is None:
            print(
                "no headless Chromium found (TMS_DROPOUT_BROWSER, chromium, google-chrome): no PDF",
                file=sys.stderr,
            )
        else:
            pdf_path = print_pdf(html_path, out / f"paper{suffix}.pdf", browser)
    return BuildResult(
        html_path, pdf_path, numbers_path, data.outputs, len(paper.table.numbers), time.perf_counter() - start
    )
