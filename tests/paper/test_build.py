"""The paper's build: runs cached by command, inputs and code; a page with numbers, figures and equations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paper import runs as paper_runs
from paper.build import SOURCE, build
from paper.figures import FIGURES, figure
from paper.runs import Data, load_runs
from theory.errors import InputError

from . import browser

WRITE = (
    'python -c "import sys, xarray as xr; '
    "xr.Dataset({'loss': ('cell', [0.25, 0.125])}, attrs={'n_features': 5, 'n_hidden': 2})"
    '.to_netcdf(sys.argv[1])" {out}/result.nc'
)


def _runs_file(tmp_path: Path, command: str = WRITE, reads: str = "") -> Path:
    path = tmp_path / "runs.toml"
    path.write_text(
        f"[tiny]\ncommand = '''{command}'''\nquick = '''{command} --quick'''\n"
        f"datasets = {{ tiny = 'result.nc' }}\n{reads}"
    )
    return path


def test_a_run_is_reused_until_its_command_inputs_or_code_change(tmp_path, monkeypatch):
    runs = load_runs(_runs_file(tmp_path))
    first = Data(runs, tmp_path / "out", quick=False)
    assert float(first["tiny"].loss.sum()) == 0.375
    assert not first.outputs["tiny"].reused
    again = Data(runs, tmp_path / "out", quick=False)
    again.output("tiny")
    assert again.outputs["tiny"].reused
    monkeypatch.setattr(paper_runs, "code_digest", lambda: "another version of the code")
    changed = Data(runs, tmp_path / "out", quick=False)
    changed.output("tiny")
    assert not changed.outputs["tiny"].reused
    record = json.loads((tmp_path / "out/runs/full/tiny/run.json").read_text())
    assert record["command"].endswith("result.nc") and record["seconds"] > 0


def test_a_failed_run_leaves_nothing_that_is_read(tmp_path):
    runs = load_runs(_runs_file(tmp_path, "python -c 'import sys; sys.exit(3)' {out}"))
    with pytest.raises(RuntimeError, match="exit status 3"):
        Data(runs, tmp_path / "out", quick=False).output("tiny")
    assert not (tmp_path / "out/runs/full/tiny").exists()
    assert (tmp_path / "out/runs/full/tiny.partial/log.txt").exists()


THREADS = (
    'python -c "import os, sys, xarray as xr; '
    "xr.Dataset(attrs={k: os.environ.get(k, 'unset') for k in sys.argv[2:]}).to_netcdf(sys.argv[1])\" "
    "{out}/result.nc " + " ".join(paper_runs.THREAD_VARIABLES)
)


@pytest.mark.parametrize("jobs", [1, 2])
def test_runs_at_once_start_threads_on_their_share_of_the_cores(tmp_path, monkeypatch, jobs):
    for name in paper_runs.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(paper_runs.os, "cpu_count", lambda: 8)
    data = Data(load_runs(_runs_file(tmp_path, THREADS)), tmp_path / "out", quick=False)
    data.prepare(jobs)
    seen = set(data["tiny"].attrs.values())
    assert seen == ({"unset"} if jobs == 1 else {"4"}), data["tiny"].attrs


#: A run that spends `seconds` of CPU time in a process it starts and waits for ("busy"), or as long
#: asleep ("sleep"), then writes its Dataset.
CPU = (
    'python -c "import subprocess, sys, time, xarray as xr; '
    "busy = 'import time; end = time.process_time() + {seconds}\\nwhile time.process_time() < end: pass'; "
    "subprocess.run([sys.executable, '-c', busy], check=True) if sys.argv[2] == 'busy' "
    'else time.sleep({seconds}); xr.Dataset().to_netcdf(sys.argv[1])" {{out}}/result.nc {mode}'
)


def test_a_run_records_the_cpu_time_of_its_own_processes_only(tmp_path):
    """Two runs at once: the one busy for 0.8 s of CPU (in a process it starts) records it; the one
    asleep meanwhile (1.5 s) records only its own start-up, not the other's time, though the other's
    processes ended while it ran."""
    path = tmp_path / "runs.toml"
    busy, asleep = CPU.format(seconds=0.8, mode="busy"), CPU.format(seconds=1.5, mode="sleep")
    path.write_text(
        f"[busy]\ncommand = '''{busy}'''\ndatasets = {{ busy = 'result.nc' }}\n"
        f"[asleep]\ncommand = '''{asleep}'''\ndatasets = {{ asleep = 'result.nc' }}\n"
    )
    data = Data(load_runs(path), tmp_path / "out", quick=False)
    data.prepare(jobs=2)
    ran = data.outputs
    assert ran["busy"].cpu_seconds >= 0.8, ran["busy"]
    assert ran["asleep"].cpu_seconds < 0.5 < ran["asleep"].seconds, ran["asleep"]
    record = json.loads((tmp_path / "out/runs/full/busy/run.json").read_text())
    assert record["cpu_seconds"] == ran["busy"].cpu_seconds
    again = Data(load_runs(path), tmp_path / "out", quick=False).output("busy")
    assert again.reused and again.cpu_seconds == ran["busy"].cpu_seconds


def test_runs_are_listed_in_the_order_the_text_reads_them(tmp_path):
    """Runs start in the order runs.toml declares (the longest first); the page lists them as read."""
    path = tmp_path / "runs.toml"
    path.write_text(
        f"[first]\ncommand = '''{WRITE}'''\ndatasets = {{ first = 'result.nc' }}\n"
        f"[second]\ncommand = '''{WRITE}'''\ndatasets = {{ second = 'result.nc' }}\n"
    )
    data = Data(load_runs(path), tmp_path / "out", quick=False)
    data.prepare()
    assert list(data.outputs) == ["first", "second"]
    source = tmp_path / "source"
    (source / "sections").mkdir(parents=True)
    for name in ("page.html.j2", "style.css"):
        (source / name).write_text((SOURCE / name).read_text())
    (source / "sections/01.md").write_text(
        "Least losses: {{ num('second', 'ds.loss.min()', '.3f') }}, {{ num('first', 'ds.loss.max()') }}."
    )
    result = build(tmp_path / "out", pdf=False, source=source, runs_file=path)
    table = result.html.read_text().split('<table class="runs">')[1]
    assert table.index("<td>second</td>") < table.index("<td>first</td>")


def test_runs_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[x]\ncommand = 'python x.py'\ndatasets = { a = 'a.nc' }\n")
    with pytest.raises(InputError, match=r"does not write under \{out\}"):
        load_runs(bad)
    bad.write_text("[x]\ncommand = 'python x.py {out}'\n")
    with pytest.raises(InputError, match="needs `command` and `datasets`"):
        load_runs(bad)


@pytest.fixture
def tiny_paper(tmp_path):
    """A paper with one run, a number, a figure and an equation, built in tmp_path/out."""
    source = tmp_path / "source"
    (source / "sections").mkdir(parents=True)
    (source / "page.html.j2").write_text((SOURCE / "page.html.j2").read_text())
    (source / "style.css").write_text((SOURCE / "style.css").read_text())
    (source / "sections/01.md").write_text(
        "## Result\n\nFor {{ problem('tiny') }} the least loss is {{ num('tiny', 'ds.loss.min()', '.3f') }} "
        "({{ command('tiny') }}), shown in {{ fig('tiny_loss') }}, with $L = \\frac{1}{3}$ and\n\n"
        "$$\n\\mathbb{E}_{x} \\lVert x - x' \\rVert^2 = \\sum_i I_i\n$$\n\n"
        "{% call figure('tiny_loss') %}The two losses of $W$.{% endcall %}\n"
    )

    @figure("tiny_loss")
    def tiny_loss(data, path):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot(data["tiny"].loss.values, "o")
        fig.savefig(path)
        plt.close(fig)
        return path

    yield source, _runs_file(tmp_path), tmp_path / "out"
    FIGURES.pop("tiny_loss")


def test_build_writes_the_page_and_the_table_of_numbers(tiny_paper):
    source, runs_file, out = tiny_paper
    result = build(out, pdf=False, source=source, runs_file=runs_file)
    page = result.html.read_text()
    assert "For 5 in 2 the least loss is 0.125" in page
    assert "shown in Figure 1" in page and "<b>Figure 1.</b>" in page
    assert page.count("<math") == 3 and "$" not in page.split("<style>")[0] + page.split("</style>")[1]
    assert "data:image/png;base64," in page
    table = result.numbers.read_text()
    assert "| 3 | 0.125 | 0.125 | tiny/result.nc | `ds.loss.min()` |" in table
    assert result.n_numbers == 3


def test_build_refuses_an_unknown_alias_an_unused_run_and_a_bad_equation(tiny_paper):
    source, runs_file, out = tiny_paper
    section = source / "sections/01.md"
    text = section.read_text()
    section.write_text(text.replace("num('tiny'", "num('tinny'"))
    with pytest.raises(InputError, match="no run writes a dataset called 'tinny'"):
        build(out, pdf=False, source=source, runs_file=runs_file)
    section.write_text(text.replace("{% call figure('tiny_loss') %}The two losses of $W$.{% endcall %}", ""))
    with pytest.raises(InputError, match="referred to but never placed: tiny_loss"):
        build(out, pdf=False, source=source, runs_file=runs_file)
    section.write_text("## Nothing read\n\nNo numbers.\n")
    with pytest.raises(InputError, match="never reads: tiny"):
        build(out, pdf=False, source=source, runs_file=runs_file)
    for broken, why in (
        ("\\frac{1}{3", "unbalanced braces"),
        ("\\fracc{1}{3}", "unknown command"),
        ("x^", "cannot be rendered"),
    ):
        section.write_text(text.replace("\\frac{1}{3}", broken))
        with pytest.raises(InputError, match=why):
            build(out, pdf=False, source=source, runs_file=runs_file)


@pytest.mark.skipif(browser.available() is not None, reason=str(browser.available()))
def test_the_built_page_renders_in_a_headless_browser_and_prints(tiny_paper):
    source, runs_file, out = tiny_paper
    result = build(out, pdf=True, source=source, runs_file=runs_file)
    assert browser.problems(result.html) == []
    assert result.pdf.read_bytes().startswith(b"%PDF")
    broken = out / "broken.html"
    broken.write_text(
        result.html.read_text()
        .replace("data:image/png;base64,", "missing.png#")
        .replace("</body>", "<p>$x$ {{ y }}</p><script>console.error('boom')</script></body>")
    )
    found = browser.problems(broken)
    assert any("image not shown" in f for f in found)
    assert any("boom" in f for f in found)
    assert any("'{{'" in f for f in found) and any("'$'" in f for f in found)


@pytest.mark.slow
@pytest.mark.skipif(browser.available() is not None, reason=str(browser.available()))
def test_the_quick_paper_builds_from_nothing_and_renders(tmp_path):
    out = tmp_path / "paper"
    command = [sys.executable, "-m", "tms_dropout.cli", "paper", "build", "--quick", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)  # only a hung build fails
    assert done.returncode == 0, done.stderr[-3000:]
    page = out / "paper-quick.html"
    assert browser.problems(page) == []
    assert "Quick build" in page.read_text()
    assert (out / "paper-quick.pdf").read_bytes().startswith(b"%PDF")


def test_a_claim_its_dataset_does_not_support_fails_the_full_build_and_is_listed_by_the_quick(tiny_paper):
    source, runs_file, out = tiny_paper
    section = source / "sections/01.md"
    text = section.read_text()
    section.write_text(text + "\n{{ claim('tiny', '(ds.loss > 0).all()', 'every loss is positive') }}\n")
    build(out, pdf=False, source=source, runs_file=runs_file)
    section.write_text(text + "\n{{ claim('tiny', 'ds.loss.min() > 0.2', 'every loss exceeds a fifth') }}\n")
    with pytest.raises(InputError, match="claim not supported by tiny: every loss exceeds a fifth"):
        build(out, pdf=False, source=source, runs_file=runs_file)
    quick = build(out, quick=True, pdf=False, source=source, runs_file=runs_file)
    page = quick.html.read_text()
    assert "Statements this quick build does not support" in page and "every loss exceeds a fifth" in page


def test_a_run_key_holds_its_script_and_inputs_but_not_other_scripts(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "scripts").mkdir(parents=True)
    (root / "configs").mkdir()
    for name in ("a.py", "b.py"):
        (root / "scripts" / name).write_text("print(1)\n")
    (root / "configs/c.toml").write_text("x = 1\n")
    monkeypatch.setattr(paper_runs, "ROOT", root)
    run = paper_runs.Run(
        "r",
        "python scripts/a.py --out {out}",
        "python scripts/a.py {out}",
        {"r": "x.nc"},
        ("configs/c.toml",),
    )
    key = paper_runs.run_key(run, False, "code")
    (root / "scripts/b.py").write_text("print(2)\n")
    assert paper_runs.run_key(run, False, "code") == key
    (root / "scripts/a.py").write_text("print(2)\n")
    changed_script = paper_runs.run_key(run, False, "code")
    (root / "configs/c.toml").write_text("x = 2\n")
    changed_input = paper_runs.run_key(run, False, "code")
    assert (
        len(
            {
                key,
                changed_script,
                changed_input,
                paper_runs.run_key(run, True, "code"),
                paper_runs.run_key(run, False, "other code"),
            }
        )
        == 5
    )
    (root / "configs/c.toml").unlink()
    with pytest.raises(InputError, match="matches no file"):
        paper_runs.run_key(run, False, "code")
