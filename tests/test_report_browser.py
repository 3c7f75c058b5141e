"""report.html opened in a real headless Chromium: it renders without console errors,
untrusted text stays text, images carry alt text, and the tables sort and filter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "</testcase>\x01\x1b",
]


def _rows(seed: int, p_general: float, p_domain: float) -> list[dict[str, Any]]:
    rows = synthetic_rows(
        seed,
        p_general,
        p_domain,
        n=200,
        domain_fields=lambda i: {
            "task_type": PAYLOADS[i % 3] if i < 3 else ["intent", "extract"][i % 2],
            "output_format": ["label", "json"][i % 2],
            "prediction": PAYLOADS[i % len(PAYLOADS)],
            "reference": PAYLOADS[(i + 1) % len(PAYLOADS)],
        },
    )
    for row in rows:
        if row["suite"] == "general":
            row["prediction"] = PAYLOADS[int(row["item_id"]) % len(PAYLOADS)]
    return rows


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
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    tasks = {
        "arc_easy": {"suite": "general", "primary_metric": "acc"},
        "realestate": {"suite": "domain", "primary_metric": "score"},
    }
    base = write_run(tmp / "runs" / "base", PAYLOADS[0], _rows(1, 0.6, 0.2), tasks)
    tuned = write_run(tmp / "runs" / "tuned", PAYLOADS[1], _rows(2, 0.3, 0.7), tasks)
    out = tmp / "out"
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) == 1
    # The page must not need plots/ next to it.
    moved = tmp / "moved.html"
    (out / "report.html").rename(moved)
    return moved


def _visible_rows(driver: Any, table_id: str) -> list[Any]:
    rows = driver.find_elements("css selector", f"#{table_id} tbody tr")
    return [r for r in rows if r.is_displayed()]


def test_loads_without_console_errors_and_runs_no_model_text(driver, report: Path) -> None:  # type: ignore[no-untyped-def]
    driver.get(report.as_uri())
    assert driver.find_element("id", "verdict").text == "FAIL"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert driver.execute_script("return document.body.getAttribute('data-pwned')") is None
    assert driver.find_elements("id", "injected") == []
    assert driver.execute_script("return document.scripts.length") == 1
    text = driver.find_element("id", "examples").text
    for payload in (
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
    ):
        assert payload in text
    assert "</testcase>" in text
    assert driver.find_element("id", "tuned-model").text == PAYLOADS[1].rsplit("/", 1)[-1]


def test_every_image_is_inline_loaded_and_has_alt_text(driver, report: Path) -> None:  # type: ignore[no-untyped-def]
    driver.get(report.as_uri())
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 22),"
        " i.naturalWidth, i.getAttribute('alt')])"
    )
    assert len(images) >= 6
    for src, width, alt in images:
        assert src == "data:image/png;base64,"
        assert width > 300
        assert alt and alt.strip() and len(alt) > 20


def test_comparison_table_sorts_on_header_click(driver, report: Path) -> None:  # type: ignore[no-untyped-def]
    driver.get(report.as_uri())
    header = driver.find_element("css selector", "#all-comparisons th[data-field=delta]")
    index = driver.execute_script("return arguments[0].cellIndex", header)

    def deltas() -> list[float]:
        cells = driver.find_elements(
            "css selector", f"#all-comparisons tbody td:nth-child({index + 1})"
        )
        return [float(c.get_attribute("data-v")) for c in cells]

    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    ascending = deltas()
    assert len(ascending) >= 4 and ascending == sorted(ascending)
    header.click()
    assert deltas() == sorted(ascending, reverse=True)


def test_tables_filter_as_you_type_and_by_direction(driver, report: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import Select

    driver.get(report.as_uri())
    total = len(_visible_rows(driver, "all-comparisons"))
    driver.find_element("id", "all-filter").send_keys("output_format")
    shown = _visible_rows(driver, "all-comparisons")
    assert 0 < len(shown) < total
    assert all("output_format" in r.text for r in shown)
    assert driver.find_element("id", "all-count").text == f"{len(shown)} of {total} rows shown"

    Select(driver.find_element("id", "ex-direction")).select_by_value("lost")
    lost = _visible_rows(driver, "examples")
    assert lost and all(r.get_attribute("data-direction") == "lost" for r in lost)
    Select(driver.find_element("id", "ex-task")).select_by_value("arc_easy")
    rows = _visible_rows(driver, "examples")
    assert rows and all(r.get_attribute("data-task") == "arc_easy" for r in rows)
    summary = json.loads((report.parent / "out" / "summary.json").read_text())
    arc = next(c for c in summary["comparisons"] if c["task"] == "arc_easy")
    assert len(rows) == min(arc["base_only"], 25)


def test_tables_stay_within_the_page_at_700_pixels(driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """At 700 pixels: nothing widens the page (the section tables used to), the table of
    every field scrolls inside its box, no column of it is wider than 24 em, and its
    first column stays in view when scrolled."""
    from tests.test_report_display import _one_row_summary, _render

    note = "a long note about the row " * 12
    _render(tmp_path, _one_row_summary(note=note, margin_source="policy.domain.margin"))
    size = driver.get_window_size()
    driver.set_window_size(700, 900)
    try:
        _check_tables_within_the_page(driver, tmp_path / "report.html")
    finally:
        driver.set_window_size(size["width"], size["height"])


def _check_tables_within_the_page(narrow_driver: Any, page_path: Path) -> None:
    narrow_driver.get(page_path.as_uri())
    page = narrow_driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert page[0] <= page[1]
    box = narrow_driver.execute_script(
        "const s = document.querySelector('#all-comparisons').parentElement;"
        "return [s.className, s.clientWidth, s.scrollWidth, getComputedStyle(s).overflowX]"
    )
    assert box[0] == "scroll" and box[1] < box[2] and box[3] == "auto"
    widths = narrow_driver.execute_script(
        "return [...document.querySelectorAll('#all-comparisons thead th')]"
        ".map(th => [th.textContent, th.getBoundingClientRect().width])"
    )
    font = narrow_driver.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('#all-comparisons')).fontSize)"
    )
    too_wide = [(name, width) for name, width in widths if width > 24 * font]
    assert too_wide == []
    moved = narrow_driver.execute_script(
        "const t = document.querySelector('#all-comparisons'); const s = t.parentElement;"
        "const cell = t.querySelector('tbody .rowname');"
        "const before = cell.getBoundingClientRect().left;"
        "s.scrollLeft = 600; return [before, cell.getBoundingClientRect().left, s.scrollLeft]"
    )
    assert moved[2] == 600 and abs(moved[0] - moved[1]) < 1  # sticky


def test_index_candidate_names_stay_in_their_cell(driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A long candidate name ran over the verdict and gain columns of index.html."""
    from collapse_eval.report.overview import Candidate, write_overview
    from collapse_eval.summary import Summary
    from tests.test_many_candidates import _summary

    long_name = "smollm2-collapsed-overtrained-epoch-40-lr-3e-4-" + "x" * 40
    candidates = [
        Candidate(name, Summary.from_json(_summary(name, verdict, 0.1, 0.99)))
        for name, verdict in (("smollm2-bf16", "pass"), (long_name, "fail"))
    ]
    write_overview(tmp_path, candidates)
    driver.get((tmp_path / "index.html").as_uri())
    spill = driver.execute_script(
        "return [...document.querySelectorAll('td.cand')].map(td => "
        "[td.querySelector('strong').getBoundingClientRect().right, "
        "td.getBoundingClientRect().right])"
    )
    assert len(spill) == 2
    assert all(name_right <= cell_right for name_right, cell_right in spill), spill
