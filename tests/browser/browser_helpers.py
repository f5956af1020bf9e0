"""Headless Chromium through selenium, for the tests that look at a page (skipped with a reason without them)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)


def require_chromium():
    """``(selenium.webdriver, chromium path, chromedriver path)``; ``pytest.skip`` with the reason when missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    browser = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    driver_path = next((shutil.which(name) for name in DRIVER_NAMES if shutil.which(name)), None)
    if browser is None or driver_path is None:
        pytest.skip("no Chromium + chromedriver installed (apt-get install chromium chromium-driver)")
    return webdriver, browser, driver_path


def chromium_driver(width: int = 1280, height: int = 800, scale: float = 1.0):
    """A headless Chromium webdriver with software WebGL (SwiftShader); ``pytest.skip`` when unavailable.

    ``scale`` is the device pixel ratio: below 1 the page renders fewer pixels (faster software WebGL).
    """
    webdriver, browser, driver_path = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                f"--force-device-scale-factor={scale}"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def poll(read, done, timeout: float):
    """Call ``read()`` until ``done(result)`` holds or ``timeout`` seconds pass; returns the last result (``None``
    if no call answered). A renderer too busy to answer, or an element not there yet, is asked again."""
    import time

    from selenium.common.exceptions import NoSuchElementException, TimeoutException

    result, end = None, time.time() + timeout
    while time.time() < end:
        try:
            result = read()
        except (TimeoutException, NoSuchElementException):
            time.sleep(1)
            continue
        if result is not None and done(result):
            break
        time.sleep(2)
    return result


def capture(driver, selector: str = "canvas") -> tuple[bytes, np.ndarray]:
    """One screenshot of the page: ``(PNG bytes, [H, W, 3] uint8 crop of the largest element matching selector)``
    (a 1x1 black crop when nothing matches). One capture only: software WebGL can keep the renderer too busy to
    answer a second one within chromedriver's 10 s."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By

    elements = [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.size["width"] * e.size["height"] > 0]
    rects = [e.rect for e in elements]
    ratio_css = driver.execute_script("return window.devicePixelRatio")
    png = driver.get_screenshot_as_png()
    page = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if not rects:
        return png, np.zeros((1, 1, 3), np.uint8)
    rect = max(rects, key=lambda r: r["width"] * r["height"])
    x0, y0 = round(rect["x"] * ratio_css), round(rect["y"] * ratio_css)
    return png, page[y0 : y0 + round(rect["height"] * ratio_css), x0 : x0 + round(rect["width"] * ratio_css)]


# Reads a WebGL canvas inside an animation frame, after the page's own render of that frame: its drawing buffer
# is valid until the frame is composited, even without preserveDrawingBuffer. Only the canvas: labels and buttons
# drawn over it by the page are not in it.
_READ_CANVAS_JS = """
const [selector, done] = arguments;
requestAnimationFrame(() => requestAnimationFrame(() => {
  const canvases = [...document.querySelectorAll(selector)].filter(c => c.width * c.height > 0);
  if (!canvases.length) { done(null); return; }
  const canvas = canvases.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
  done(canvas.toDataURL("image/png"));
}));
"""


def read_canvas(driver, selector: str = "canvas") -> np.ndarray | None:
    """``[H, W, 3]`` uint8 pixels of the largest canvas matching ``selector``, composited onto black (cleared
    pixels are black), at the canvas's own resolution; ``None`` while there is no such canvas."""
    import base64
    import io

    from PIL import Image

    url = driver.execute_async_script(_READ_CANVAS_JS, selector)
    if not url:
        return None
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"), np.float32)
    return (rgba[..., :3] * (rgba[..., 3:] / 255.0)).round().astype(np.uint8)


def colour_mask(pixels: np.ndarray, colour: str) -> np.ndarray:
    """``[H, W]`` bool: pixels that are clearly ``"red"``, ``"green"`` or ``"blue"`` (dominant channel, not dark)."""
    r, g, b = (pixels[..., i].astype(np.float32) for i in range(3))
    if colour == "red":
        return (r > 90) & (r > 1.6 * g) & (r > 1.6 * b)
    if colour == "green":
        return (g > 90) & (g > 1.6 * r) & (g > 1.6 * b)
    if colour == "blue":
        return (b > 70) & (b > 1.3 * r) & (b > 1.1 * g)
    raise ValueError(f"colour must be 'red', 'green' or 'blue', got {colour!r}")


def centre(mask: np.ndarray, min_pixels: int = 50) -> tuple[float, float] | None:
    """Mean ``(column, row)`` of the ``True`` pixels as fractions of width and height, ``None`` below
    ``min_pixels`` of them."""
    rows, cols = np.nonzero(mask)
    if len(cols) < min_pixels:
        return None
    return float(cols.mean() / mask.shape[1]), float(rows.mean() / mask.shape[0])


def drag(driver, element, dx: int) -> None:
    """Press the left button on ``element`` ``dx / 2`` CSS pixels left of its centre and move it ``dx`` right."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(element, -dx // 2, 0).click_and_hold().move_by_offset(
        dx // 2, 0).move_by_offset(dx - dx // 2, 0).release().perform()


def save_docs_png(path, image) -> None:
    """Save a screenshot (PNG bytes or ``[H, W, 3]`` uint8) for the docs as a 256-colour PNG (100-300 KB)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else Image.fromarray(image)
    image.convert("RGB").quantize(256).save(path, optimize=True)
