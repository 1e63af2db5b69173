"""The page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
Selenium): upload an image, see the grid, click a result and see the new query in the URL,
open a pseudo class, and seed a search from one of its images. Saves a screenshot; with
``UNICOM_SCREENSHOT=PATH`` it is also written to PATH (docs/img/serve.png is made so)."""
from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from tests.conftest import free_port
from tests.unicom.serve.support import item_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no headless browser: the real-browser test needs Debian's chromium and "
                                      "chromium-driver (apt-get install chromium chromium-driver; CI installs them)")


@pytest.fixture(scope="module")
def live_server(service):
    """The app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from unicom.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service=service), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,900",
              "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=DriverService(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout=30):
    """Wait for ``cond``; an element the page re-rendered meanwhile (stale) just means "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: cond(d))


def _click_nth(driver, selector: str, i: int):
    """Click the ``i``-th element matching ``selector`` once the page has settled; returns its
    aria-label. Found and clicked in one step, so a re-render in between is retried, not an error."""
    def attempt(d):
        el = d.find_elements("css selector", selector)[i]
        label = el.get_attribute("aria-label") or ""
        el.click()
        return label or True

    return _wait(driver, attempt)


def test_the_page_searches_follows_results_and_browses_pseudo_classes(live_server, browser, service, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(live_server + "/")
    _wait(d, lambda d: "images" in d.find_element(By.ID, "status").text)
    query = tmp_path / "query.jpg"
    query.write_bytes(item_bytes(service, 21))
    d.find_element(By.ID, "file").send_keys(str(query))
    cards = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card"))
    assert len(cards) == 10
    first = cards[0].find_element(By.CSS_SELECTOR, ".score").text
    assert first.startswith("#1 · 1.000") or first.startswith("#1 · 0.99")
    assert "q=query%3A" in d.current_url
    # the images are loaded from the service
    _wait(d, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))
    d.save_screenshot(str(tmp_path / "search.png"))

    # a click on a result searches from it; the URL names it; the keyboard does the same
    label = _click_nth(d, "#results .card", 3)
    _wait(d, lambda d: "q=item%3A" in d.current_url)
    item = int(d.current_url.split("item%3A")[1].split("&")[0])
    _wait(d, lambda d: f"item {item}" in d.find_element(By.ID, "query-label").text)
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card .score")[0].text.startswith("#1 · 1.000")
          or d.find_elements(By.CSS_SELECTOR, "#results .card .score")[0].text.startswith("#1 · 0.99"))
    assert "Search from it" in label
    d.get(d.current_url)  # the shared URL alone reproduces the query
    _wait(d, lambda d: f"item {item}" in d.find_element(By.ID, "query-label").text)
    # from the keyboard: focus the second result and press Enter
    from selenium.webdriver.common.keys import Keys

    before = d.current_url

    def focus_second_and_press_enter(d):
        second = d.find_elements(By.CSS_SELECTOR, "#results .card")[1]
        d.execute_script("arguments[0].focus()", second)
        if d.switch_to.active_element != second:
            return False
        second.send_keys(Keys.ENTER)
        return True

    _wait(d, focus_second_and_press_enter)
    _wait(d, lambda d: d.current_url != before and "q=item%3A" in d.current_url)

    # the pseudo-class tab: sorted by purity, a class opens its members, a member seeds a search
    d.find_element(By.ID, "tab-classes").click()
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#classes button")) == 8)
    from selenium.webdriver.support.ui import Select

    Select(d.find_element(By.ID, "sort")).select_by_value("purity")
    _wait(d, lambda d: "sort=purity" in d.current_url)
    _click_nth(d, "#classes button", 0)
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#members .card"))
    assert "purity" in d.find_element(By.ID, "class-title").text
    _wait(d, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#members img')].slice(0, 8).every(i => i.complete && i.naturalWidth)"))
    shot = tmp_path / "classes.png"
    d.save_screenshot(str(tmp_path / "classes.png"))
    _click_nth(d, "#members .card", 0)
    _wait(d, lambda d: "q=member%3A" in d.current_url and d.find_elements(By.CSS_SELECTOR, "#results .card"))
    assert "pseudo-class member" in d.find_element(By.ID, "query-label").text

    # phone-sized: the grid has two columns and the page does not scroll sideways
    d.set_window_size(390, 844)
    d.get(live_server + "/#q=item%3A5&k=6")
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) == 6)
    assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    cols = d.execute_script("return getComputedStyle(document.getElementById('results')).gridTemplateColumns")
    assert len(cols.split()) == 2
    d.set_window_size(1100, 900)
    _save_docs_screenshot(tmp_path / "search.png", shot)


def _save_docs_screenshot(search_png, classes_png):
    """Both views side by side, palette-quantised, into ``$UNICOM_SCREENSHOT`` when it is set."""
    dest = os.environ.get("UNICOM_SCREENSHOT")
    if not dest:
        return
    from PIL import Image

    a, b = Image.open(search_png).convert("RGB"), Image.open(classes_png).convert("RGB")
    both = Image.new("RGB", (a.width + b.width + 16, max(a.height, b.height)), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width + 16, 0))
    both = both.resize((both.width * 2 // 3, both.height * 2 // 3), Image.LANCZOS)
    both.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
