"""`comp report`: a self-contained HTML page built from a real tiny workspace with real runs,
checked as text and, where Chromium is installed, rendered in a headless browser."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from comp.project import Project
from comp.report import ReportLimits, build_report
from comp.runs.store import RunStore
from tests.conftest import comp

INDEX_SECTIONS = ("leaderboard", "folds", "classes", "confusion", "correlation", "blends", "submissions",
                  "studies")
RUN_SECTIONS = ("run", "params", "folds", "stats", "classes", "confusion", "parents")
BLEND_NAME = "mix_co"
COMPETITION_NAME = "<i>mix</i> & co"  # user text that looks like markup: the page must escape it


def workspace_with_runs(template: Path, root: Path, blend_name: str) -> Path:
    """A copy of the tiny workspace, named with markup, with two models, a failed run and a
    blend of the two."""
    shutil.copytree(template, root)
    config = root / "comp.toml"
    config.write_text(re.sub(r'^name = .*$', f'name = "{COMPETITION_NAME}"', config.read_text(), flags=re.M))
    comp("run", "tfidf", "--set", "char_max=0", workspace=root)
    comp("run", "fasttext", workspace=root)
    # a vocabulary left empty by min_df fails inside fold 0: a failed run with its reason
    assert comp("run", "tfidf", "--set", "min_df=100000", "--set", "char_max=0", "--name", "broken",
                workspace=root, check=False).returncode == 2
    comp("blend", "--name", blend_name, workspace=root)
    return root


@pytest.fixture(scope="module")
def workspace(tiny_template: Path, tmp_path_factory) -> Path:
    """The runs of `workspace_with_runs` and two submissions with public scores."""
    root = workspace_with_runs(tiny_template, tmp_path_factory.mktemp("report") / "ws", BLEND_NAME)
    for rank, public in ((1, 0.81), (2, 0.84)):
        best = json.loads(comp("leaderboard", "--json", workspace=root).stdout)[rank - 1]
        comp("submit", best["id"], "--name", f"s{rank}", workspace=root)
        provenance = root / "submissions" / f"s{rank}.json"
        # What a user (or `comp submit` after the leaderboard answered) records beside it.
        provenance.write_text(json.dumps({**json.loads(provenance.read_text()), "public_score": public}))
    return root


def _runs(root: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(comp("leaderboard", "--json", workspace=root).stdout)}


class _Page(HTMLParser):
    """Section ids, image sources, links and visible text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(attributes["id"])
        if tag == "img":
            self.images.append(attributes["src"])
        if tag in {"a", "link", "script"}:
            self.links.append(attributes.get("href") or attributes.get("src") or "")

    def handle_data(self, data):
        self.text.append(data)


def _section_text(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section {anchor}"
    return "".join(_Page(match.group(1)).text)


def test_index_has_every_section_and_is_self_contained(workspace: Path):
    result = comp("report", workspace=workspace)
    path = workspace / "reports" / "index.html"
    assert str(path) in result.stdout
    html = path.read_text(encoding="utf-8")
    page = _Page(html)
    assert page.sections == list(INDEX_SECTIONS)
    # Six inline PNG charts and no external resource: the file opens offline.
    assert len(page.images) == 6 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert all(link.startswith(("#", "data:")) for link in page.links), page.links
    assert not re.search(r"(src|href)=\"https?:", html)

    runs = _runs(workspace)
    leaderboard = _section_text(html, "leaderboard")
    for run in runs.values():
        assert run["id"] in leaderboard
    assert re.search(rf'<tr class="failed"><td class="num">\d+</td><td>{runs["broken"]["id"]}</td>', html)
    # The user's run name is text on the page, never markup.
    assert BLEND_NAME in leaderboard and "<i>mix</i>" not in html and "&lt;i&gt;mix" in html

    best = next(r for r in runs.values() if r["state"] == "done")
    assert best["id"] in _section_text(html, "classes")
    confusion = _section_text(html, "confusion")
    # Readable category names (the leaf of the demo's Russian category path), not bare ids.
    assert re.search(r"\d+ [А-Яа-яЁё]", confusion)
    correlation = _section_text(html, "correlation")
    assert runs["tfidf"]["id"] in correlation and runs["fasttext"]["id"] in correlation
    assert runs["broken"]["id"] not in correlation and runs[BLEND_NAME]["id"] not in correlation
    blend = runs[BLEND_NAME]
    blends = _section_text(html, "blends")
    assert blend["id"] in blends and "weight" in blends and runs["tfidf"]["id"] in blends
    submissions = _section_text(html, "submissions")
    assert "s1" in submissions and "0.8400" in submissions and "0.8100" in submissions
    assert "public score against CV" in html  # the fitted CV → public chart


def test_run_page_shows_one_blend_in_depth(workspace: Path):
    blend = _runs(workspace)[BLEND_NAME]
    out = workspace / "elsewhere" / "blend.html"
    comp("report", "--run", blend["id"], "--out", str(out), workspace=workspace)
    html = out.read_text(encoding="utf-8")
    assert _Page(html).sections == [*RUN_SECTIONS, "blend"]
    overview = _section_text(html, "run")
    assert blend["id"] in overview and "done" in overview and BLEND_NAME in overview
    assert "caruana" in _section_text(html, "params")
    folds = _section_text(html, "folds")
    assert all(f"{score:.4f}" in folds for score in blend["fold_scores"])
    for parent in blend["parents"]:
        assert parent in _section_text(html, "parents")
    assert "in-sample" in _section_text(html, "blend")


def test_run_page_of_a_failed_run_says_why(workspace: Path):
    broken = _runs(workspace)["broken"]
    comp("report", "--run", "broken", workspace=workspace)
    html = (workspace / "reports" / f"{broken['id']}.html").read_text(encoding="utf-8")
    assert "ValueError" in _section_text(html, "run") and "min_df" in _section_text(html, "run")
    assert "The run is failed" in _section_text(html, "classes")
    assert "missing" in _section_text(html, "folds")


def test_empty_workspace_renders_every_section(tiny: Path):
    comp("report", workspace=tiny)
    html = (tiny / "reports" / "index.html").read_text(encoding="utf-8")
    assert _Page(html).sections == list(INDEX_SECTIONS)
    assert "No runs yet" in _section_text(html, "leaderboard")
    assert "No submissions yet" in _section_text(html, "submissions")


def test_unknown_run_and_folder_out_are_one_sentence(workspace: Path):
    result = comp("report", "--run", "nope", workspace=workspace, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown run 'nope': `comp leaderboard` lists the runs"
    result = comp("report", "--out", str(workspace), workspace=workspace, check=False)
    assert result.returncode == 2 and "is a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_many_runs_stay_fast_and_capped(workspace: Path, tmp_path: Path):
    """150 runs (copies of the real ones under new ids): the correlation matrix and the
    spread chart keep to their caps and the page builds in seconds."""
    root = tmp_path / "ws"
    shutil.copytree(workspace, root, ignore=shutil.ignore_patterns("reports"))
    store = RunStore(root / "runs")
    originals = [r for r in store.all() if r.status == "done" and r.model != "blend"]
    for copy in range(75):
        for record in originals:
            clone = replace(record, id=f"{record.id}-c{copy}")
            shutil.copytree(store.run_dir(record.id), store.run_dir(clone.id))
            store.save(clone)
    limits = ReportLimits()
    started = time.perf_counter()
    path = build_report(Project.open(root), limits=limits)
    elapsed = time.perf_counter() - started
    html = path.read_text(encoding="utf-8")
    assert len(store.all()) >= 150 + len(originals)
    assert elapsed < 30, f"report took {elapsed:.1f}s"
    correlation_rows = re.search(r'<section id="correlation">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert correlation_rows.group(1).count("<tr") == limits.correlation_runs
    assert f"Showing the best {limits.spread_runs} of" in _section_text(html, "leaderboard")


def _chromium() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install 'comp[dev]')")
    return browser, driver


@pytest.fixture
def browser():
    binary, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # Without the networking flags Chromium keeps calling home on a closed network.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        driver.set_window_size(1280, 1000)
        try:
            yield driver
        finally:
            driver.quit()


def _assert_renders(driver, path: Path, sections: tuple[str, ...]) -> None:
    from selenium.webdriver.common.by import By

    driver.get(path.as_uri())
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    for anchor in sections:
        heading = driver.find_element(By.CSS_SELECTOR, f"section#{anchor} > h2")
        driver.execute_script("arguments[0].scrollIntoView()", heading)
        assert heading.is_displayed() and heading.text
    images = driver.find_elements(By.TAG_NAME, "img")
    assert images
    widths = driver.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    assert all(width > 0 for width in widths), widths


def test_report_renders_in_headless_chromium(workspace: Path, browser):
    comp("report", workspace=workspace)
    _assert_renders(browser, workspace / "reports" / "index.html", INDEX_SECTIONS)
    blend = _runs(workspace)[BLEND_NAME]
    comp("report", "--run", blend["id"], workspace=workspace)
    _assert_renders(browser, workspace / "reports" / f"{blend['id']}.html", (*RUN_SECTIONS, "blend"))
