"""Every number in the paper comes from a Dataset: the template's `num(...)`, its record, and the check
that no number is typed into the source.

In the source, `{{ num("alias", "expression", "format") }}` evaluates the
expression (Python, with `ds` the alias's Dataset, `np` and the helpers of
`paper.quantities`) and formats it; the build records the value, the
Dataset, the expression and the command that wrote the Dataset
(`NumberTable`). `typed_numbers(text)` finds digits written into the prose
outside template expressions, code and equations, and decimals written into
equations: the build fails on any of them. Integers in equations (x^2,
(1 - p)^k) and in code (commands, file names) are allowed.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import numpy as np

from theory.errors import InputError


@dataclass(frozen=True)
class Number:
    """One number of the text: how it is printed and where it came from."""

    text: str
    value: float
    alias: str
    expression: str
    dataset: str
    command: str


class NumberTable:
    """The numbers of one rendering, in the order they appear."""

    def __init__(self):
        self.numbers: list[Number] = []

    def add(self, number: Number) -> str:
        self.numbers.append(number)
        return number.text

    def markdown(self, commands: bool = True) -> str:
        """The table in Markdown; without `commands` the command column is left out (the page lists each
        run's command once)."""
        head = ["#", "printed", "value", "Dataset", "expression"] + (["command"] if commands else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for k, n in enumerate(self.numbers, 1):
            cells = [str(k), n.text, repr(n.value), n.dataset, f"`{n.expression}`"]
            cells += [f"`{n.command}`"] if commands else []
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["printed", "value", "alias", "dataset", "expression", "command"])
        for n in self.numbers:
            writer.writerow([n.text, repr(n.value), n.alias, n.dataset, n.expression, n.command])
        return buffer.getvalue()


def format_value(value, spec: str) -> tuple[str, float]:
    """(text, value) for a scalar: `spec` is a Python format spec ('.3g', '.1%', 'd', ',d')."""
    array = np.asarray(value)
    if array.size != 1:
        raise InputError(f"a number must be one value; the expression gave shape {array.shape}")
    scalar = array.item()
    if isinstance(scalar, float | np.floating) and not np.isfinite(scalar):
        raise InputError(f"the expression gave {scalar}")
    if spec.endswith("d"):
        if float(scalar) != round(float(scalar)):
            raise InputError(f"format {spec!r} asks for an integer; the expression gave {scalar}")
        scalar = int(round(float(scalar)))
    text = format(scalar, spec)
    if text.startswith("-") and not any(c in "123456789" for c in text.split("e")[0]):
        text = text[1:]  # a negative number that rounds to zero prints as zero
    # Typographic minus, and no "1e-05" in prose: a power of ten is written out.
    if "e" in text and spec.endswith(("g", "e")):
        mantissa, exponent = text.split("e")
        text = f"{mantissa} × 10<sup>{int(exponent)}</sup>"
    return text.replace("-", "−"), float(scalar)


_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]+`")
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
_INLINE_MATH = re.compile(r"\$[^$\n]+?\$")
_DECIMAL = re.compile(r"\d*\.\d+")
_DIGIT = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class TypedNumber:
    line: int
    text: str
    where: str  # "prose" or "equation"

    def __str__(self) -> str:
        return f"line {self.line}: {self.text!r} typed into the {self.where}"


def _blank(match: re.Match) -> str:
    """The match replaced by spaces, its newlines kept (so line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def typed_numbers(text: str) -> list[TypedNumber]:
    """Numbers written into a source text instead of coming from a Dataset."""
    text = _TEMPLATE.sub(_blank, text)
    text = _FENCE.sub(_blank, text)
    text = _CODE.sub(_blank, text)
    found = []
    for pattern in (_DISPLAY_MATH, _INLINE_MATH):
        for match in pattern.finditer(text):
            for decimal in _DECIMAL.finditer(match.group(0)):
                line = text.count("\n", 0, match.start() + decimal.start()) + 1
                found.append(TypedNumber(line, decimal.group(0), "equation"))
        text = pattern.sub(_blank, text)
    for match in _DIGIT.finditer(text):
        found.append(TypedNumber(text.count("\n", 0, match.start()) + 1, match.group(0), "prose"))
    return sorted(found, key=lambda t: t.line)
