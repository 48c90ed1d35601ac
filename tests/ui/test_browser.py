"""The Dagster UI as a person sees it: a small flywheel run (one twin chunk, a 4-step agent, a small
benchmark, a short closed loop, the leaderboard), then `make ui` and headless Chromium on the lineage,
the train_field_agent page, a camera contact sheet and the runs leaderboard. Screenshots land in
artifacts/ui/ (FLYWHEEL_UI_SHOTS overrides)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, serving

pytestmark = pytest.mark.ui

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = Path(os.environ.get("FLYWHEEL_UI_SHOTS", REPO / "artifacts" / "ui"))
SPINE = ["raw_chunks", "clip_index", "egomotion", "frames", "unicycle_targets", "commander_labels", "webdataset_shards",
         "train_field_agent", "navsim_eval"]
GROUPS = ["ingest", "index", "targets", "labels", "shards", "training", "evaluation", "qa"]

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the UI test: apt-get install chromium chromium-driver (.ci/run does)")
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)


# A small run of the whole graph, as real Dagster runs in the UI's instance: what the pages show.
SMALL_RUN = [
    ("raw_chunks,clip_index,egomotion,frames,unicycle_targets,commander_labels,webdataset_shards", "chunk_0000", {}),
    ("benchmark_set,train_field_agent,navsim_eval", None, {
        "train_field_agent": {"steps": 4, "batch_size": 8, "val_every": 4, "checkpoint_every": 4},
        "benchmark_set": {"clips_per_scenario": 1, "seconds": 9.0, "width": 128, "height": 72}}),
    ("closed_loop_eval,runs", None, {"closed_loop_eval": {"scenarios": ["stop_and_go"], "seconds": 4.0}}),
    ("data_qa_report", None, {}),
]


def _populate(env: dict[str, str]) -> None:
    def run(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run([sys.executable, "-m", "flywheel.cli", "discover"])
    for select, partition, ops in SMALL_RUN:
        config = {"ops": {k: {"config": v} for k, v in ops.items()}, "execution": {"config": {"in_process": {}}}}
        run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project", "--select", select,
             *(["--partition", partition] if partition else []), "--config-json", json.dumps(config)])


LAKE: dict[str, Path] = {}  # the UI's lake, for the report test


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small flywheel run, then `make ui` on its instance, in its own process group (job control), so
    that it can be stopped as a whole."""
    home, port = tmp_path_factory.mktemp("dagster_home"), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}, "DAGSTER_HOME": str(home),
           "UI_PORT": str(port), "FLYWHEEL_LAKE": str(home / "lake"), "FLYWHEEL_TWIN_DIR": str(home / "twin"),
           "FLYWHEEL_TWIN_CHUNKS": "1", "FLYWHEEL_TWIN_CLIPS": "4", "FLYWHEEL_TWIN_SECONDS": "10"}
    (home / "dagster.yaml").touch()
    _populate(env)
    LAKE["root"] = home / "lake"
    with serving(["make", "-s", "ui"], cwd=REPO, env=env, port=port, log_path=home / "ui.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000"):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={Path(os.environ.get('TMPDIR', '/tmp')) / f'chromium-ui-{os.getpid()}'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver: object, url: str, expect: list[str]) -> str:
    """Load a page, dismiss the first-visit newsletter dialog as a person would, wait for `expect` texts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)  # type: ignore[attr-defined]

    def ready(d: object) -> bool:
        for skip in d.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):  # type: ignore[attr-defined]
            skip.click()
        body = d.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        return all(e in body for e in expect)

    WebDriverWait(driver, 90, poll_frequency=1).until(ready)
    time.sleep(2)  # the graph settles its layout after the names appear; the dialog may come late
    ready(driver)
    WebDriverWait(driver, 10).until(lambda d: "Join the Dagster community" not in d.find_element(By.TAG_NAME, "body").text)
    return driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]


def test_asset_graph_shows_the_whole_flywheel(ui: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    text = _open(browser, f"{ui}/asset-groups", ["Global asset lineage", *GROUPS])
    assert "Materialize all" in text
    browser.save_screenshot(str(SHOTS / "asset_groups.png"))  # type: ignore[attr-defined]
    # every asset upstream of navsim_eval, drawn as the graph a user explores
    text = _open(browser, f"{ui}/assets/navsim_eval?view=lineage&lineageScope=upstream&lineageDepth=10", SPINE)
    browser.save_screenshot(str(SHOTS / "asset_graph.png"))  # type: ignore[attr-defined]
    assert (SHOTS / "asset_graph.png").stat().st_size > 20_000
    # the link `make ui` prints and the README gives: the global lineage with every group open
    from dagster_project.lineage import lineage_url

    _open(browser, lineage_url(ui), [*SPINE, "runs", "closed_loop_eval", "data_qa_report"])
    browser.save_screenshot(str(SHOTS / "lineage_expanded.png"))  # type: ignore[attr-defined]


def test_train_field_agent_page(ui: str, browser: object) -> None:
    text = _open(browser, f"{ui}/assets/train_field_agent",
                 ["train_field_agent", "SmolVLA (LeRobot) trained", "Upstream assets", "webdataset_shards", "navsim_eval"])
    assert "Materialize" in text and "training" in text
    browser.save_screenshot(str(SHOTS / "train_field_agent.png"))  # type: ignore[attr-defined]
    text = _open(browser, f"{ui}/assets/train_field_agent?view=checks", ["qa_training_runs", "qa_training_metrics"])
    browser.save_screenshot(str(SHOTS / "train_field_agent_checks.png"))  # type: ignore[attr-defined]


def _show_markdown(driver: object, key: str, expect: str = "") -> object:
    """The metadata row `key`'s markdown as a person sees it: inline when Dagster shows it in the row (short
    markdown), else in the dialog its "[Show Markdown]" opens, once that shows `expect` (the markdown renders
    after the dialog opens). Returns the element holding it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    row = f"//tr[td[1][normalize-space()='{key}']]"
    try:
        cell = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.XPATH, f"{row}/td[last()]"))
    except Exception:
        driver.save_screenshot(str(SHOTS / f"missing_{key}.png"))  # type: ignore[attr-defined]
        raise
    links = cell.find_elements(By.XPATH, ".//a[contains(., 'Show Markdown')]")
    if not links:
        return cell
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", links[0])  # type: ignore[attr-defined]
    links[0].click()
    dialog = f"//*[@role='dialog'][.//*[normalize-space()='{key}']]"
    return WebDriverWait(driver, 30).until(
        lambda d: next((e for e in d.find_elements(By.XPATH, dialog) if expect in e.text), False))


def test_a_camera_contact_sheet_renders_with_its_commands(ui: str, browser: object) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, f"{ui}/assets/commander_labels?partition=chunk_0000", ["commander_labels", "contact_sheet"])
    dialog = _show_markdown(browser, "contact_sheet")
    img = dialog.find_element(By.TAG_NAME, "img")  # type: ignore[attr-defined]
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    w, h = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)  # type: ignore[attr-defined]
    assert w >= 1000 and h >= 200, (w, h)  # 4 frames a row at 320 px, captions under them: decoded, not a broken image
    browser.save_screenshot(str(SHOTS / "contact_sheet.png"))  # type: ignore[attr-defined]


def test_the_runs_leaderboard_renders_epdms_first(ui: str, browser: object) -> None:
    _open(browser, f"{ui}/assets/runs", ["runs", "leaderboard", "best_agent"])
    dialog = _show_markdown(browser, "leaderboard", "EPDMS [95%]")
    text = dialog.text  # type: ignore[attr-defined]
    assert text.index("EPDMS [95%]") < text.index("policy") < text.index("driving score [95%]"), text
    for policy in ("field_agent", "constant_controls", "field_agent_shield", "driver_model"):
        assert f"{policy}\n" in text or f"{policy} " in text, (policy, text)
    browser.save_screenshot(str(SHOTS / "leaderboard.png"))  # type: ignore[attr-defined]


def test_the_qa_report_is_embedded_and_its_pages_render_offline(ui: str, browser: object) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, f"{ui}/assets/data_qa_report", ["data_qa_report", "failures", "summary"])
    text = _show_markdown(browser, "summary", "commander_labels").text  # type: ignore[attr-defined]
    assert "commander_labels" in text and "runs" in text and "passed" in text, text
    reports = LAKE["root"] / "qa_reports"
    browser.get((reports / "latest.html").as_uri())  # type: ignore[attr-defined]
    body = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert "0 partitions with failures" in body and "Expectations met, with what was observed" in body, body[:2000]
    browser.save_screenshot(str(SHOTS / "qa_report.png"))  # type: ignore[attr-defined]
    browser.find_element(By.LINK_TEXT, "all past validations").click()  # type: ignore[attr-defined]
    assert "Data-QA validations" in browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
