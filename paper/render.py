"""Markdown with equations to a self-contained HTML page, and the page to PDF.

Markdown by markdown-it-py (CommonMark, tables, heading anchors), `$...$` and
`$$...$$` by mdit-py-plugins' dollarmath, each equation converted to
MathML by latex2mathml (browsers render MathML natively: no script, no
font, no network). An equation latex2mathml cannot convert fails the
build. The PDF is printed by a headless Chromium when one is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import latex2mathml.converter
from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin

from theory.errors import InputError

#: Browsers tried for the PDF, in order (TMS_DROPOUT_BROWSER first when set).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags for a headless Chromium on a machine without network or display (and as root).
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def math(latex: str, options: dict) -> str:
    """One equation as MathML; a LaTeX error is an InputError naming the equation."""
    display = "block" if options.get("display_mode") else "inline"
    depth = 0
    for char in latex.replace("\\{", "").replace("\\}", ""):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise InputError(f"equation ${latex}$ cannot be rendered: unbalanced braces")
    try:
        out = latex2mathml.converter.convert(latex, display=display)
    except Exception as error:  # latex2mathml raises its own exception classes
        raise InputError(f"equation ${latex}$ cannot be rendered: {error}") from error
    if "<merror" in out:
        raise InputError(f"equation ${latex}$ renders with an error")
    unknown = re.findall(r">(\\[A-Za-z]+)<", out)  # latex2mathml prints a command it does not know
    if unknown:
        raise InputError(f"equation ${latex}$ cannot be rendered: unknown command {unknown[0]}")
    return out


def markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True, "typographer": False}).enable("table")
    # allow_digits=False would read the character before a paragraph's opening $ as the paragraph's
    # last one (a negative index in mdit-py-plugins 0.4-0.7) and drop every equation that opens a
    # paragraph or table cell ending in a digit.
    md.use(dollarmath_plugin, allow_digits=True, renderer=math)
    md.use(anchors_plugin, min_level=2, max_level=3, permalink=False)
    return md


def headings(md: MarkdownIt, text: str) -> list[tuple[str, str]]:
    """(id, title) of the level-2 headings, for the table of contents."""
    tokens = md.parse(text)
    out = []
    for k, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            out.append((token.attrs.get("id", ""), tokens[k + 1].content))
    return out


def find_browser() -> str | None:
    names = [os.environ["TMS_DROPOUT_BROWSER"]] if os.environ.get("TMS_DROPOUT_BROWSER") else []
    for name in [*names, *BROWSERS]:
        path = shutil.which(name)
        if path:
            return path
    return None


def print_pdf(page: Path, out: Path, browser: str, timeout: float = 180) -> Path:
    """Print the HTML page to a PDF with a headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser,
            *BROWSER_FLAGS,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"{browser} did not print {page} to PDF: {result.stderr.strip()[-2000:]}")
    return out
