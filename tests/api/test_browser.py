"""The pages in a real headless Chromium with a fake camera playing a generated .y4m video of the demo world.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Screenshots go to
``test-artifacts/`` (or ``$VISIONCASCADE_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from visioncascade.demo.scenes import render_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(
    os.environ.get("VISIONCASCADE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
        ".ci/run installs them)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture
def camera_video(tmp_path: Path) -> Path:
    """12 s of the demo world (objects of every shape and colour, and empty stretches), 320×240 at 10 fps."""
    video = tmp_path / "camera.y4m"
    truth = render_video(video, seconds=12.0, fps=10.0, size=(320, 240), seed=5)
    assert {s for s, _ in truth} - {None} and None in {s for s, _ in truth}  # objects and empty scenes
    return video


@pytest.fixture
def chrome(camera_video: Path) -> Iterator[object]:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_video}",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).get_attribute("textContent").strip()


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _outside_requests(driver, base_url: str) -> list[str]:
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith((base_url, base_url.replace("http", "ws")))]


def test_live_page_runs_the_cascade_on_the_camera_and_the_dashboard_charts_it(
    quick_demo, sqlite_url: str, server_factory, chrome
):
    result, _ = quick_demo
    server = server_factory(
        sqlite_url,
        cascade_paths=[result.out_dir / "cascade.yaml"],
        rules_path=result.out_dir / "rules.yaml",
        auth_enabled=True,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(chrome, 60)

    chrome.get(f"{server.base_url}/#key={server.key('ingest', 'browser-test')}")
    wait.until(lambda d: d.find_element(By.ID, "start").is_enabled())
    assert "#key" not in chrome.current_url  # the key left the address bar (and the history)
    assert [o.text for o in Select(chrome.find_element(By.ID, "context")).options] == ["shapes", "colours"]
    chrome.find_element(By.ID, "start").click()
    wait.until(lambda d: _text(d, "domain-label") not in ("", "–"))

    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 14  # longer than one loop of the 12 s video
    while time.monotonic() < deadline and not (
        {"empty", "object"} <= {d for d, _ in seen} and len({s for _, s in seen} - {"–"}) >= 2
    ):
        seen.add((_text(chrome, "domain-label"), _text(chrome, "specialist-label")))
        time.sleep(0.1)
    domains = {d for d, _ in seen}
    shapes = {s for _, s in seen} - {"–"}
    assert {"empty", "object"} <= domains, seen  # labels appear and change with the scene
    assert len(shapes) >= 2 and shapes <= {"circle", "square", "triangle"}, seen
    assert int(_text(chrome, "frames")) >= 10
    wait.until(lambda d: int(_text(d, "events-stored")) > 0)
    assert "message" in _text(chrome, "output")  # the API's rule-chosen output is shown

    Select(chrome.find_element(By.ID, "context")).select_by_value("colours")
    wait.until(lambda d: "colours" in _text(d, "specialist-name"))
    wait.until(lambda d: _text(d, "specialist-label") in {"red", "green", "blue"})
    chrome.save_screenshot(str(ARTIFACTS / "live-page.png"))

    chrome.find_element(By.ID, "start").click()  # stop
    wait.until(lambda d: _text(d, "start") == "Start camera")
    shown = int(_text(chrome, "events-stored"))
    rows = server.query("SELECT device_id, context FROM events")
    assert len(rows) >= shown > 0  # (a reply may have been on its way when the page stopped)
    assert {r.device_id.split("-")[0] for r in rows} == {"browser"}
    assert {r.context for r in rows} == {"shapes", "colours"}
    assert _console_errors(chrome) == [] and _outside_requests(chrome, server.base_url) == []

    chrome.get(f"{server.base_url}/dashboard#key={server.key('read', 'dashboard-test')}")
    Select(chrome.find_element(By.ID, "window")).select_by_value("300")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-labels rect.bar"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-confidence path"))
    # Each refresh of the page rebuilds the model list and the table, so an element found a moment ago
    # can be gone (stale) when the test reads it: read both in the page, in one script call each.
    models = chrome.execute_script("return [...document.getElementById('model').options].map(o => o.text)")
    assert models == ["colour", "domain", "shape"]
    events_per_row = chrome.execute_script(
        "return [...document.querySelectorAll('#summary tbody tr')].map(r => r.cells[3].textContent)"
    )
    assert sum(int(n) for n in events_per_row) >= 2 * len(rows)
    chrome.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert _console_errors(chrome) == [] and _outside_requests(chrome, server.base_url) == []
    for name in ("live-page.png", "dashboard.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
