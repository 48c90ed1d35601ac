"""The Dagster UI as a person sees it: `make ui`, then headless Chromium on the asset graph and the
train_field_agent page. Screenshots land in artifacts/ui/ (FLYWHEEL_UI_SHOTS overrides)."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make ui` in its own process group (job control), so that it can be stopped as a whole."""
    home, port = tmp_path_factory.mktemp("dagster_home"), free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "UI_PORT": str(port),
           "FLYWHEEL_LAKE": str(home / "lake"), "FLYWHEEL_TWIN_DIR": str(home / "twin")}
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


def test_train_field_agent_page(ui: str, browser: object) -> None:
    text = _open(browser, f"{ui}/assets/train_field_agent",
                 ["train_field_agent", "SmolVLA (LeRobot) trained", "Upstream assets", "webdataset_shards", "navsim_eval"])
    assert "Materialize" in text and "training" in text
    browser.save_screenshot(str(SHOTS / "train_field_agent.png"))  # type: ignore[attr-defined]
    text = _open(browser, f"{ui}/assets/train_field_agent?view=checks", ["qa_training_runs", "qa_training_metrics"])
    browser.save_screenshot(str(SHOTS / "train_field_agent_checks.png"))  # type: ignore[attr-defined]
