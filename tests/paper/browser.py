"""Open a built page in a real headless Chromium and list what is wrong with it (for the paper's tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from paper.render import BROWSER_FLAGS, find_browser


def available() -> str | None:
    """Why the browser check cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if find_browser() is None or shutil.which("chromedriver") is None:
        return "no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
    return None


def problems(page: Path) -> list[str]:
    """Console errors, images that did not load, equations not rendered, template text left over."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.binary_location = find_browser()
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(page.resolve().as_uri())
        found = [
            f"console: {entry['message']}"
            for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")
        ]
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt || i.src.slice(0, 60))"
        )
        found += [f"image not shown: {name}" for name in broken]
        external = driver.execute_script(
            "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') "
            "|| e.getAttribute('href')).filter(u => /^(https?:)?\\/\\//.test(u))"
        )
        found += [f"external resource: {url}" for url in external]
        maths = driver.execute_script(
            "return Array.from(document.querySelectorAll('math')).map(m => "
            "[m.getBoundingClientRect().width, m.querySelectorAll('merror').length])"
        )
        found += [
            f"equation {k} has an error or no width"
            for k, (width, errors) in enumerate(maths)
            if errors or width <= 0
        ]
        text = driver.execute_script("return document.body.innerText")
        for leftover in ("{{", "}}", "{%", "%}", "$$", "Figure ?"):
            if leftover in text:
                found.append(f"unrendered text {leftover!r} on the page")
        if text.count("$") > 0:
            found.append("a '$' on the page: an equation left as LaTeX")
        return found
    finally:
        driver.quit()
