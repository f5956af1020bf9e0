"""Headless Chromium through selenium, for the tests that look at a page (skipped with a reason without them)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)


def chromium_driver(width: int = 1280, height: int = 800, scale: float = 1.0):
    """A headless Chromium webdriver with software WebGL (SwiftShader); ``pytest.skip`` when unavailable.

    ``scale`` is the device pixel ratio: below 1 the page renders fewer pixels (faster software WebGL).
    """
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    browser = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    driver_path = next((shutil.which(name) for name in DRIVER_NAMES if shutil.which(name)), None)
    if browser is None or driver_path is None:
        pytest.skip("no Chromium + chromedriver installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                f"--force-device-scale-factor={scale}"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


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


def canvas_pixels(driver, selector: str = "canvas") -> np.ndarray:
    """``[H, W, 3]`` uint8 screenshot of the largest element matching ``selector``."""
    return capture(driver, selector)[1]
