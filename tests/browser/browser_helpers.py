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


def canvas_pixels(driver, selector: str = "canvas") -> np.ndarray:
    """``[H, W, 3]`` uint8 screenshot of the largest element matching ``selector``."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By

    elements = [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.size["width"] * e.size["height"] > 0]
    page = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    if not elements:
        return np.zeros((1, 1, 3), np.uint8)
    rect = max(elements, key=lambda e: e.size["width"] * e.size["height"]).rect
    ratio = page.shape[1] / driver.execute_script("return window.innerWidth")  # device pixels per CSS pixel
    x0, y0 = round(rect["x"] * ratio), round(rect["y"] * ratio)
    return page[y0 : y0 + round(rect["height"] * ratio), x0 : x0 + round(rect["width"] * ratio)]
