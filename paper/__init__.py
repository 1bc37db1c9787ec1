"""The paper: the project's answer to "how does dropout change superposition?", rebuilt by one command.

    tms-dropout paper build [--quick] [--out runs/paper]

`paper/runs.toml` names every run the text needs (a command that writes
Datasets); `paper/source/sections/*.md` is the text, Markdown with Jinja2
expressions, in which every number comes from a Dataset through `num(...)`.
The build runs or reuses each run (`paper.runs`: cached by its command, the
files it reads and the code's content), draws the figures (`paper.figures`),
renders the text with its equations as MathML (`paper.render`) and writes a
self-contained HTML article, a PDF where a headless Chromium is present, and
the table of every number with its Dataset, expression and command
(`paper.numbers`). A digit typed into the prose fails the build.

From Python: `from paper.build import build; build(out, quick=True)`. Nothing
is imported here, so that `tms-dropout` (which imports paper.cli) stays fast.
"""
