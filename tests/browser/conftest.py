"""Real Chromium (Debian's `chromium` package) driven by Playwright for Python, against the
whole stack: uvicorn (`asgi_live_server`), a Celery worker (`live_worker`), the test
database and Redis. Playwright's own browser download is never used.

Without Chromium or Playwright the tests skip, naming what is missing (in CI that fails:
.ci/run installs Chromium). TAGGER_SCREENSHOTS=docs/images writes the README's screenshots.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import require
from tests.factories import PASSWORD

CHROMIUM = os.environ.get("TAGGER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# No sandbox: the tests run as root in a container. The rest keeps Chromium from calling
# home, so the only traffic is the page's own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1360, "height": 900}
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module. Playwright's sync API keeps an asyncio loop running in this
    thread, where Django would refuse the tests' own ORM calls; the servers, separate
    processes, keep their async-safety checks."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "Playwright for Python is not installed")
    require(Path(CHROMIUM).is_file(), f"Chromium is not installed ({CHROMIUM}; Debian: chromium)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


class Visit:
    """One browser context (its own cookies) on the live server, and what the tests watch
    in it: responses, requests that left the machine, uncaught script errors."""

    def __init__(self, browser, base_url: str):
        self.base_url = base_url
        self.context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.responses = []
        self.outside = []
        self.script_errors = []
        self.page.on("response", lambda response: self.responses.append(response))
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        self.page.on("request", self._request)

    def _request(self, request):
        if not request.url.startswith((self.base_url, "data:", "blob:")):
            self.outside.append(request.url)

    def sign_in(self, user, password: str = PASSWORD):
        page = self.page
        page.goto("/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Your items").wait_for()
        return page

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, asgi_live_server):
    """Open a new browser context: `visit()`; each call is a separate person."""
    opened = []

    def open_visit() -> Visit:
        opened.append(Visit(browser, asgi_live_server.url))
        return opened[-1]

    yield open_visit
    for each in opened:
        errors, outside = each.script_errors, each.outside
        each.close()
        assert not errors, f"the page raised: {errors}"
        assert not outside, f"the page fetched from outside the server: {outside}"


@pytest.fixture
def screenshot():
    """Save a PNG for the docs when TAGGER_SCREENSHOTS names a folder; otherwise nothing."""
    folder = os.environ.get("TAGGER_SCREENSHOTS")

    def take(page, name: str, **options):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}.png"), **options)

    take.enabled = bool(folder)
    return take
