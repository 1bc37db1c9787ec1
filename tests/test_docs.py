"""The code on the documentation pages runs as written and prints what the page shows."""

import contextlib
import doctest
import io
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

DOCS = Path(__file__).resolve().parents[1] / "docs"


def fences(page: Path) -> list[tuple[str, str]]:
    """The page's fenced code blocks, (language, code), in order."""
    tokens = MarkdownIt().parse(page.read_text())
    return [(token.info.strip(), token.content) for token in tokens if token.type == "fence"]


def test_fences_are_read_in_order():
    blocks = fences(DOCS / "testing.md")
    assert [language for language, _ in blocks[:2]] == ["python", "text"]
    assert "def dedicated_loss(" in blocks[0][1] and "cases agree" in blocks[1][1]


@pytest.mark.parametrize(
    ("page", "blocks_at_least", "defines_tests"), [("testing.md", 5, True), ("phase_diagrams.md", 1, False)]
)
def test_code_on_the_page_runs_and_prints_what_it_shows(page, blocks_at_least, defines_tests):
    """Each python block runs in one namespace, in order; a text block after it is its output (`...`
    matches anything); then every test_* function the page defines is run."""
    blocks = fences(DOCS / page)
    namespace: dict = {"__name__": "docs"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    ran = 0
    for k, (language, code) in enumerate(blocks):
        if language != "python":
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{page} block {k}", "exec"), namespace)
        ran += 1
        if k + 1 < len(blocks) and blocks[k + 1][0] == "text":
            shown = blocks[k + 1][1]
            assert checker.check_output(shown, printed.getvalue(), flags), (
                f"{page} block {k} printed\n{printed.getvalue()}\nbut the page shows\n{shown}"
            )
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for test in tests:
        test()
    assert ran >= blocks_at_least and bool(tests) == defines_tests
