"""Numbers in the paper come from Datasets: the typed-number check and the formatting."""

from pathlib import Path

import numpy as np
import pytest

from paper.build import SOURCE, check_sources
from paper.numbers import format_value, typed_numbers
from theory.errors import InputError


def test_typed_numbers_finds_digits_in_prose_and_decimals_in_equations():
    text = (
        "The loss is {{ num('a', 'ds.loss', '.3f') }} at p = 0.4.\n"
        "An equation $x^2 + (1 - p)^k$ is fine, $p = 0.15$ is not.\n"
        "`tms-dropout --points 200` is code.\n"
        "```\npython scripts/x.py --cases 60\n```\n"
        "$$\nL = \\frac{1}{3} + 2.5\n$$\n"
        "{# a comment with 3 in it #}{% if x == 2 %}{% endif %}\n"
        "Twelve cells, 7 seeds."
    )
    found = [(t.line, t.text, t.where) for t in typed_numbers(text)]
    assert found == [(1, "0.4", "prose"), (2, "0.15", "equation"), (8, "2.5", "equation"), (11, "7", "prose")]


def test_the_papers_source_has_no_typed_number():
    check_sources(sorted((SOURCE / "sections").glob("*.md")))


def test_a_typed_number_fails_the_build_check(tmp_path: Path):
    section = tmp_path / "01.md"
    section.write_text("## A\n\nThe optimum is 0.0208 here.\n")
    with pytest.raises(InputError, match=r"01.md: line 3: '0.0208' typed into the prose"):
        check_sources([section])


def test_format_value():
    assert format_value(np.float64(0.123456), ".3g") == ("0.123", 0.123456)
    assert format_value(np.array([7.0]), "d") == ("7", 7.0)
    assert format_value(-0.5, ".1%")[0] == "−50.0%"
    assert format_value(-0.0004, ".2f")[0] == "0.00"
    assert format_value(6.8e-16, ".1e")[0] == "6.8 × 10<sup>−16</sup>"
    with pytest.raises(InputError, match="one value"):
        format_value(np.arange(3), ".3g")
    with pytest.raises(InputError, match="integer"):
        format_value(2.5, "d")
    with pytest.raises(InputError, match="nan"):
        format_value(float("nan"), ".3g")


def test_an_equation_opening_a_cell_that_ends_in_a_number_is_rendered():
    from paper.render import markdown

    md = markdown()
    for text in ("$b$: 0.3", "| a |\n|---|\n| $b^* = q$: 0.364 at $p$ = 0.4 |\n"):
        out = md.render(text)
        assert "$" not in out and out.count("<math") == text.count("$") // 2, out
