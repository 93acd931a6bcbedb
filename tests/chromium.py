"""Debian's Chromium for the browser tests and the goAway benchmark: where it is, how it is
launched, and what a test says when it is missing."""

from __future__ import annotations

import os
import shutil

CHROMIUM = (
    os.environ.get("CHROMIUM")
    or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: A fake microphone (a beep) that needs no permission prompt, and audio without a gesture.
FAKE_MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
NO_CHROMIUM = (
    "needs Chromium: install it with `apt-get install chromium` "
    "(.ci/run does) or set CHROMIUM=/path/to/chromium"
)
