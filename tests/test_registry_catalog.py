"""Our seven connectors published through the third-party path, and the HTML catalog in headless Chromium
(acceptance 5 and 6).

The registry runs the conformance kit on every upload, exactly as for any
publisher: ``tapyard registry register tapyard`` then ``tapyard publish
connectors/<name>`` for each. The catalog test drives Debian's Chromium
through Selenium and Debian's chromedriver: it searches, filters, opens a
connector's page and takes a screenshot, which it checks is not blank.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapyard.marketplace._errors import RegistryError
from tapyard.testing import service_missing
from tests.registry_helpers import ROOT, environment, running_registry

CONNECTORS = sorted(p.name for p in (ROOT / "connectors").iterdir() if (p / "pyproject.toml").is_file())
SCREENSHOTS = Path(os.environ.get("TAPYARD_SCREENSHOTS", "")) if os.environ.get("TAPYARD_SCREENSHOTS") else None


# a module's registry is seeded once, by kit runs and builds that take minutes on a loaded machine
pytestmark = pytest.mark.timeout(1200)


@dataclass
class Seeded:
    url: str
    published: dict[str, dict[str, Any]]
    #: connectors the kit fails: what the author's own kit run said, and what the registry said
    refused: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    from tapyard.marketplace._publish import publish, register
    from tapyard.marketplace._source import Source

    base = tmp_path_factory.mktemp("registry-seeded")
    with running_registry(base / "server", kit=True) as server:
        source = Source(server.url)
        published, refused = {}, {}
        with environment(TAPYARD_HOME=str(base / "home"), TAPYARD_PUBLISHER_KEY=str(base / "tapyard.pem")):
            token = register(source, "tapyard")["token"]
            for name in CONNECTORS:
                try:
                    published[name] = publish(source, ROOT / "connectors" / name, token=token, run_kit=False)
                except RegistryError as remote:
                    # the registry said no: the author's own kit run must say no for the same reason
                    with pytest.raises(RegistryError) as local:
                        publish(source, ROOT / "connectors" / name, token=token)
                    refused[name] = (str(local.value), str(remote))
        source.close()
        yield Seeded(server.url, published, refused)


def test_our_seven_connectors_publish_through_the_third_party_path(seeded: Seeded) -> None:
    """Each is listed, or refused by the registry for the check its author's own kit run failed."""
    assert len(CONNECTORS) == 7 and set(seeded.published) | set(seeded.refused) == set(CONNECTORS)
    assert len(seeded.published) >= 5
    for name, (local, remote) in seeded.refused.items():
        assert "conformance kit failed" in local and "conformance kit failed" in remote, name
        failed_check = remote.split(f"{name}: ", 1)[1].split(":")[0]
        assert failed_check in local, (name, local, remote)
    index = httpx.get(seeded.url + "api/v1/index.json").json()["packages"]
    assert sorted(p["name"] for p in index) == sorted(f"tapyard-{n}" for n in seeded.published)
    for package in index:
        assert package["publisher"] == "tapyard"
        assert package["support_level"] in ("community", "certified") and package["score"] > 0 and package["kit_passed_at"]


def test_search_and_filters_over_the_api(seeded: Seeded) -> None:
    found = httpx.get(seeded.url + "api/v1/search", params={"q": "stripe"}).json()
    assert found["results"][0]["name"] == "tapyard-stripe"
    by_auth = httpx.get(seeded.url + "api/v1/search", params={"auth": "api_key"}).json()
    assert by_auth["total"] >= 1
    assert all(any("api_key" in c["auth_kinds"] for c in p["connectors"]) for p in by_auth["results"])
    nothing = httpx.get(seeded.url + "api/v1/search", params={"q": "no-such-connector-anywhere"}).json()
    assert nothing == {"query": "no-such-connector-anywhere", "filters": {}, "total": 0, "results": []}


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        service_missing("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    assert browser and driver
    return browser, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    browser_path, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _pixels(png: bytes) -> tuple[int, int, set[int]]:
    """Width, height and the distinct byte values of a PNG's image data (enough to tell a blank page)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, width, height = 8, b"", 0, 0
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        body = png[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    return width, height, set(zlib.decompress(idat))


def test_the_catalog_in_headless_chromium(seeded: Seeded, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(seeded.url)
    results = browser.find_elements(By.CSS_SELECTOR, "#results li.result")
    assert len(results) == len(seeded.published)

    # search
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("stripe")
    box.submit()
    wait.until(ec.url_contains("q=stripe"))
    names = [li.get_attribute("data-name") for li in browser.find_elements(By.CSS_SELECTOR, "#results li.result")]
    assert names == ["tapyard-stripe"]

    # a filter: the script submits the form when it changes
    browser.get(seeded.url)
    expected = {p["name"] for p in httpx.get(seeded.url + "api/v1/search", params={"level": "certified"}).json()["results"]}
    assert expected and len(expected) < len(seeded.published)
    Select(browser.find_element(By.ID, "filter-level")).select_by_value("certified")
    wait.until(ec.url_contains("level=certified"))
    shown = {li.get_attribute("data-name") for li in browser.find_elements(By.CSS_SELECTOR, "#results li.result")}
    assert shown == expected

    # a connector's page
    browser.get(seeded.url + "?q=stripe")
    browser.find_element(By.CSS_SELECTOR, "#results li.result a").click()
    wait.until(ec.presence_of_element_located((By.ID, "package")))
    assert browser.current_url.endswith("/c/tapyard-stripe")
    assert browser.find_element(By.ID, "install-command").text == f"tapyard install tapyard-stripe=={seeded.published['stripe']['version']}"
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "customers" in page and "api.stripe.com" in page and "api_key" in page
    assert "score" in browser.find_element(By.ID, "score").text and "last passed" in browser.find_element(By.ID, "score").text
    assert "tapyard <0.2,>=0.1" in browser.find_element(By.ID, "core").text or ">=0.1" in browser.find_element(By.ID, "core").text
    assert "tapyard" in browser.find_element(By.CSS_SELECTOR, ".by").text

    folder = SCREENSHOTS or tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "catalog-stripe.png"
    shot.write_bytes(browser.get_screenshot_as_png())
    width, height, values = _pixels(shot.read_bytes())
    assert width >= 800 and height >= 600
    assert len(values) > 16, "the screenshot is blank"
