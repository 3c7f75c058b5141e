"""report.html opened in a real headless Chromium: it renders, plots load, nothing executes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from collapse_eval.cli import main
from tests.conftest import synthetic_rows, write_run

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM),
    reason="needs Debian's chromium and chromium-driver (scripts/setup.sh --dev installs them)",
)

# Payloads that would change the page if any untrusted text were rendered unescaped.
PAYLOADS = [
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">",
    "<script>document.body.setAttribute('data-pwned', 'script')</script>",
    "</pre></td></tr></table><h1 id=injected>injected</h1>",
]


def _rows(seed: int, p_general: float, p_domain: float) -> list[dict]:
    return synthetic_rows(
        seed,
        p_general,
        p_domain,
        n=200,
        domain_fields=lambda i: {
            "task_type": PAYLOADS[i % 3] if i < 3 else ["intent", "extract"][i % 2],
            "output_format": "label",
            "prediction": PAYLOADS[i % 3],
            "reference": PAYLOADS[(i + 1) % 3],
        },
    )


@pytest.fixture(scope="module")
def driver():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


def test_report_renders_in_chromium_without_executing_model_output(driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tasks = {
        "arc_easy": {"suite": "general", "primary_metric": "acc"},
        "realestate": {"suite": "domain", "primary_metric": "score"},
    }
    base = write_run(tmp_path / "base", PAYLOADS[0], _rows(1, 0.6, 0.2), tasks)
    tuned = write_run(tmp_path / "tuned", PAYLOADS[1], _rows(2, 0.3, 0.7), tasks)
    out = tmp_path / "out"
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) == 1

    driver.get((out / "report.html").as_uri())
    assert driver.find_element("id", "verdict").text == "FAIL"
    assert driver.execute_script("return document.body.getAttribute('data-pwned')") is None
    assert driver.find_elements("id", "injected") == []
    # The payload text is shown as text, verbatim.
    assert PAYLOADS[2] in driver.find_element("id", "examples").text
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
    )
    assert {src for src, _ in images} >= {"plots/general.png", "plots/domain.png"}
    assert all(width > 200 for _, width in images), images
    general_rows = driver.find_elements("css selector", "table[data-section=general] tbody tr")
    assert len(general_rows) == 1
    assert "regressed" in general_rows[0].text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "fail"
