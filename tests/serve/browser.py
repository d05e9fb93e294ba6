"""Headless Chromium helpers shared by the dashboard tests: find the browser, poll the page, read the canvas."""

from __future__ import annotations

import asyncio
import os
import shutil

from tests.services import unavailable

BACKGROUND = (0x0F, 0x14, 0x19)  # the chart's background colour in dashboard.js
UP, DOWN = (0x26, 0xA6, 0x9A), (0xEF, 0x53, 0x50)
INSTALL = "install Chromium (apt-get install chromium) and Playwright (pip install playwright)"


def chromium_path() -> str:
    """The system Chromium (Playwright's own browser downloads need the internet)."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        unavailable(f"no chromium executable found: {INSTALL}")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable(f"playwright is not installed: {INSTALL}")
    return path


PIXELS = """() => {
  const c = document.getElementById('chart'), ctx = c.getContext('2d');
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const near = (i, rgb) => Math.abs(d[i] - rgb[0]) < 8 && Math.abs(d[i + 1] - rgb[1]) < 8 && Math.abs(d[i + 2] - rgb[2]) < 8;
  let other = 0, up = 0, down = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (!near(i, %s)) other++;
    if (near(i, %s)) up++;
    if (near(i, %s)) down++;
  }
  return { other, up, down, total: d.length / 4, png: c.toDataURL('image/png').length };
}""" % (list(BACKGROUND), list(UP), list(DOWN))


async def until(page, expression: str, timeout_s: float = 15.0):
    """Poll a JS expression until truthy. Playwright's wait_for_function evaluates strings inside the
    page, which the dashboard's Content-Security-Policy (no unsafe-eval) rightly forbids."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await page.evaluate(f"() => ({expression})")
        if value:
            return value
        if loop.time() > deadline:
            status = await page.evaluate("() => [document.getElementById('status').dataset.status, "
                                         "document.getElementById('error').textContent]")
            raise TimeoutError(f"still false after {timeout_s}s: {expression} (status, error: {status})")
        await asyncio.sleep(0.05)
