"""Test support: open a local HTML file in headless Chromium and report what it shows.

Uses selenium with the Debian packages ``chromium`` and ``chromium-driver``
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``). Both paths are given to
selenium explicitly, so Selenium Manager never runs and nothing is downloaded;
the sandbox has no network and CI must not depend on one.

Typical use::

    require_chromium()
    page = render_page(report_path, tmp_path / "report.png")
    assert all(image.loaded for image in page.images)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM_BINARY = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# What this sandbox and CI need: no setuid sandbox (root in a container), no GPU,
# a tiny /dev/shm, no network; and nothing that phones home or updates itself.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)

INSTALL_HINT = (
    "apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
)

# Chromium refuses windows taller than this; longer pages are captured to this height.
MAX_WINDOW_HEIGHT = 16_000

_IMAGES_SCRIPT = """
const headings = Array.from(document.querySelectorAll('h1, h2, h3'));
return Array.from(document.images).map((img) => {
  let heading = null;
  for (const h of headings) {
    if (h.compareDocumentPosition(img) & Node.DOCUMENT_POSITION_FOLLOWING) heading = h.innerText;
  }
  const figure = img.closest('figure');
  const caption = figure ? figure.querySelector('figcaption') : null;
  const box = img.getBoundingClientRect();
  return {
    alt: img.alt,
    complete: img.complete,
    natural_width: img.naturalWidth,
    natural_height: img.naturalHeight,
    width: box.width,
    height: box.height,
    right: box.right,
    heading: heading,
    caption: caption ? caption.innerText : null,
  };
});
"""

# Elements that stick out past the right edge of the viewport and so widen the
# page, outermost only; content of a box that scrolls by itself (a <pre>, a
# wide table in its scroll box) does not count.
_OVERFLOW_SCRIPT = """
const limit = document.documentElement.clientWidth + 1;
const scrolls = (el) => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX);
const sticksOut = (el) => el.getBoundingClientRect().right > limit;
const insideScrollBox = (el) => {
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    if (scrolls(p)) return true;
  }
  return false;
};
return Array.from(document.body.querySelectorAll('*'))
  .filter((el) => sticksOut(el) && !insideScrollBox(el))
  .filter((el) => !(el.parentElement !== document.body && sticksOut(el.parentElement)))
  .map((el) => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''));
"""


@dataclass(frozen=True)
class ImageFacts:
    """One ``<img>`` as the browser loaded and laid it out (sizes in CSS px)."""

    alt: str
    complete: bool
    natural_width: int
    natural_height: int
    width: float
    height: float
    right: float
    heading: str | None
    caption: str | None

    @property
    def loaded(self) -> bool:
        """True when the browser decoded the image (a broken one has naturalWidth 0)."""
        return self.complete and self.natural_width > 0 and self.natural_height > 0


@dataclass(frozen=True)
class PageFacts:
    """What a reader of the page would see."""

    title: str
    text: str
    images: list[ImageFacts]
    viewport_width: int
    scroll_width: int
    scroll_height: int
    overflowing: list[str]
    screenshot: Path


def chromium_available() -> bool:
    """True when both the Chromium binary and its chromedriver are installed."""
    return all(
        path.is_file() and os.access(path, os.X_OK) for path in (CHROMIUM_BINARY, CHROMEDRIVER)
    )


def require_chromium() -> None:
    """Skips the calling test when Chromium is missing, but fails it in CI.

    CI installs Chromium (see ``.ci/run``), so a missing browser there is a
    broken CI image, not a reason to pass silently.
    """
    if chromium_available():
        return
    message = (
        f"headless Chromium not installed ({CHROMIUM_BINARY} and {CHROMEDRIVER} are needed); "
        f"install it with: {INSTALL_HINT}"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """Starts headless Chromium with a throw-away profile; yields the selenium driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Only consulted by Selenium Manager, which the explicit paths below bypass;
    # set anyway so a future selenium that calls it stays offline and silent.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM_BINARY)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _resize_viewport(driver, width: int, height: int) -> None:
    """Sets the window so that the viewport (not the window) is width x height."""
    driver.set_window_size(width, height)
    inner_width, inner_height = driver.execute_script(
        "return [window.innerWidth, window.innerHeight];"
    )
    if (inner_width, inner_height) != (width, height):
        driver.set_window_size(2 * width - inner_width, 2 * height - inner_height)


def render_page(html_path: str | Path, screenshot_path: str | Path, width: int = 1280) -> PageFacts:
    """Opens ``html_path`` in headless Chromium and saves a full-page screenshot.

    The viewport is ``width`` CSS px wide and as tall as the page (up to
    MAX_WINDOW_HEIGHT), so the screenshot shows the whole report.

    Args:
        html_path: A local HTML file.
        screenshot_path: Where the PNG goes (folders are created).
        width: Viewport width in CSS px.

    Returns:
        The page's title, visible text, images, sizes and the screenshot path.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    html_path = Path(html_path).resolve()
    screenshot_path = Path(screenshot_path)
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    with chromium(width) as driver:
        driver.get(html_path.as_uri())
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(
                "return document.readyState === 'complete'"
                " && Array.from(document.images).every((img) => img.complete);"
            )
        )
        _resize_viewport(driver, width, 900)
        scroll_height = driver.execute_script("return document.documentElement.scrollHeight;")
        _resize_viewport(driver, width, min(scroll_height, MAX_WINDOW_HEIGHT))
        # The final layout, at the size the screenshot is taken.
        scroll_width, scroll_height, viewport_width = driver.execute_script(
            "const e = document.documentElement;"
            " return [e.scrollWidth, e.scrollHeight, e.clientWidth];"
        )
        images = [ImageFacts(**facts) for facts in driver.execute_script(_IMAGES_SCRIPT)]
        overflowing = driver.execute_script(_OVERFLOW_SCRIPT)
        title = driver.title
        text = driver.execute_script("return document.body.innerText;")
        if not driver.save_screenshot(str(screenshot_path)):
            raise RuntimeError(f"Chromium could not save a screenshot to {screenshot_path}")
    return PageFacts(
        title=title,
        text=text,
        images=images,
        viewport_width=viewport_width,
        scroll_width=scroll_width,
        scroll_height=scroll_height,
        overflowing=overflowing,
        screenshot=screenshot_path,
    )
