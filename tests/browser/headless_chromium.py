# Copyright (c) mmelastic contributors. All rights reserved.
"""Headless Chromium for the HTML tests: Debian's ``chromium`` driven by its
``chromedriver`` through selenium, offline.

:func:`ensure_browser` finds the three; where one is missing it runs
``tools/setup_browser.sh`` (apt-get for the browser, pip for selenium) and,
if that cannot install them, fails the test with the command to run. It
never skips: a skipped browser test would hide a broken setup.

The browser starts with no network services of its own (no component
updates, sync or background networking) and a throw-away profile, so a page
loaded from ``file://`` can only use what is inside it.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / 'tools' / 'setup_browser.sh'
INSTALL_HINT = ('bash tools/setup_browser.sh  (as root: apt-get update && '
                'apt-get install -y chromium chromium-driver; and '
                f'{sys.executable} -m pip install selenium)')

CHROMIUM_ARGS = ('--headless', '--no-sandbox', '--disable-gpu',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync',
                 '--disable-dev-shm-usage', '--window-size=1400,900')


def _find():
    try:
        import selenium  # noqa: F401
        has_selenium = True
    except ImportError:
        has_selenium = False
    return shutil.which('chromium'), shutil.which('chromedriver'), \
        has_selenium


def ensure_browser():
    """Return ``(chromium, chromedriver)`` paths, installing them (and
    selenium) with tools/setup_browser.sh when missing."""
    chromium, driver, has_selenium = _find()
    if chromium and driver and has_selenium:
        return chromium, driver
    env = dict(os.environ, MMELASTIC_PYTHON=sys.executable)
    proc = subprocess.run(['bash', str(SETUP_SCRIPT)],
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=900)
    import importlib
    importlib.invalidate_caches()
    chromium, driver, has_selenium = _find()
    if proc.returncode != 0 or not (chromium and driver and has_selenium):
        pytest.fail('headless Chromium for the HTML tests is missing and '
                    f'could not be installed; run: {INSTALL_HINT}\n'
                    f'--- tools/setup_browser.sh output ---\n'
                    f'{proc.stdout[-3000:]}')
    return chromium, driver


def start_driver(profile_dir, chromium=None, driver=None):
    """Start headless Chromium under chromedriver; returns the selenium
    WebDriver (call ``quit()``)."""
    if chromium is None or driver is None:
        chromium, driver = ensure_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROMIUM_ARGS + (f'--user-data-dir={profile_dir}', ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))
