"""The workspace at / in real Chromium, through the whole stack: sign in, build a tree,
upload and convert a raster with the bar following the event stream, look at the result on
the map, cancel a large conversion, and stay out of another user's items."""

import io
import json
import re
import uuid

from django.core.files import File
from django.core.files.base import ContentFile
from PIL import Image

from tagger.services import item_create
from tests import rasters
from tests.factories import UserFactory

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, in CI, fails) saying so
    expect = None

CONVERSION_TIMEOUT_MS = 120_000
TILE = re.compile(r"/api/v1/tree-items/[^/]+/tiles/\d+/\d+/\d+(@2x)?\.png")


def _record_progress(page):
    """Remember every value the conversion bar shows, and mark the document: a reload
    would forget both."""
    page.evaluate(
        """() => {
          window.__progressSeen = [];
          window.__sameDocument = true;
          const bar = document.getElementById("conversion-bar");
          new MutationObserver(() => window.__progressSeen.push(bar.value))
            .observe(bar, {attributes: true, attributeFilter: ["value"]});
        }"""
    )


def _distinct_colours(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])


def test_anonymous_visitors_are_sent_to_sign_in_and_can_sign_out(visit, transactional_db):
    user = UserFactory()
    page = visit().page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))

    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("did not match")

    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your items")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {user.username}")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/"))


def test_folders_are_created_opened_renamed_and_deleted_from_the_keyboard(visit, transactional_db):
    page = visit().sign_in(UserFactory())
    expect(page.get_by_text("This folder is empty")).to_be_visible()

    page.get_by_label("New folder").fill("Surveys")
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Surveys")).to_be_visible()

    page.get_by_role("link", name="Surveys").focus()
    page.keyboard.press("Enter")
    crumbs = page.get_by_role("navigation", name="Breadcrumbs")
    expect(crumbs.locator("[aria-current=page]")).to_have_text("Surveys")
    page.get_by_label("New folder").fill("2026")
    page.get_by_role("button", name="Create folder").click()
    page.get_by_role("link", name="2026").click()
    expect(crumbs.get_by_role("listitem")).to_have_text(["Home", "Surveys", "2026"])

    crumbs.get_by_role("link", name="Home").click()
    page.get_by_role("button", name="Rename Surveys").focus()
    page.keyboard.press("Enter")
    renaming = page.get_by_label("New name for Surveys")
    expect(renaming).to_be_focused()
    renaming.fill("Field surveys")
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Field surveys")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Renamed to Field surveys.")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Field surveys").click()
    expect(page.get_by_role("link", name="Field surveys")).to_have_count(0)
    expect(page.get_by_text("This folder is empty")).to_be_visible()
    page.reload()
    expect(page.get_by_text("This folder is empty")).to_be_visible()


def test_upload_convert_and_look_at_the_result(visit, live_worker, tmp_path, screenshot):
    user = UserFactory()
    session = visit()
    page = session.sign_in(user)
    # The first listing has arrived: a folder made before it would be drawn over by it.
    expect(page.get_by_text("This folder is empty")).to_be_visible()
    page.get_by_label("New folder").fill("Valley")
    page.get_by_role("button", name="Create folder").click()
    page.get_by_role("link", name="Valley").click()
    page.get_by_label("New folder").fill("Older surveys")
    page.get_by_role("button", name="Create folder").click()

    source = rasters.rgb_byte_tiff(tmp_path / "valley.tif")
    page.get_by_label("Upload a file").set_input_files(source)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#upload-status")).to_have_text("Uploaded valley.tif.")
    expect(page.get_by_label("Upload progress")).to_have_attribute("value", "100")
    expect(page.get_by_role("heading", name="valley.tif")).to_be_visible()
    screenshot(page, "workspace-tree")

    # A refused request is answered in the API's words, and nothing starts.
    page.get_by_label("Target CRS").fill("EPSG:not-a-code")
    page.get_by_role("button", name="Convert", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("EPSG:not-a-code")
    assert "Traceback" not in alert.inner_text()
    expect(page.locator("#conversion")).to_be_hidden()
    page.get_by_label("Target CRS").fill("")
    page.get_by_role("button", name="Dismiss").click()
    expect(alert).to_be_hidden()

    _record_progress(page)
    with page.expect_response(lambda r: TILE.search(r.url) and r.status == 200,
                              timeout=CONVERSION_TIMEOUT_MS) as first_tile:  # fmt: skip
        page.get_by_role("button", name="Convert", exact=True).click()
        expect(page.locator("#conversion-state")).to_have_text(
            "Converted", timeout=CONVERSION_TIMEOUT_MS
        )
    assert first_tile.value.headers["content-type"] == "image/png"

    # The bar moved through the stages and reached 100% in the same document.
    assert page.evaluate("window.__sameDocument") is True
    seen = page.evaluate("window.__progressSeen")
    assert seen[-1] == 100 and any(0 < value < 100 for value in seen), seen
    assert seen == sorted(seen), seen
    expect(page.get_by_label("Conversion progress")).to_have_attribute("value", "100")
    row = page.locator("#items tr", has_text="valley.tif")
    expect(row).to_contain_text("Converted")
    assert page.evaluate("window.tagger.feed.mode") == "stream"

    # The map: tiles loaded into the raster layer, and its canvas is not blank.
    expect(page.locator(".raster-tiles img.leaflet-tile-loaded").first).to_be_visible()
    page.wait_for_function(
        "[...document.querySelectorAll('.raster-tiles img')].every(i => i.complete)"
    )
    assert _distinct_colours(page.locator("#map").screenshot()) > 200

    # Metadata at once; statistics and the preview once the follow-up task has run.
    metadata = page.locator("#metadata")
    expect(metadata).to_contain_text("EPSG:32633")
    expect(metadata).to_contain_text("1100 × 900 px, 3 bands")
    expect(page.locator("#statistics")).to_be_visible(timeout=60_000)
    expect(page.locator("#statistics tbody tr")).to_have_count(3)
    expect(page.get_by_role("img", name="Preview of valley.tif")).to_be_visible()
    page.wait_for_function("document.getElementById('thumbnail').naturalWidth > 0")
    screenshot(page, "workspace-result", full_page=True)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button, a[href]")]
          .filter((el) => el.offsetParent !== null)
          .filter((el) => !(el.labels?.length || el.getAttribute("aria-label")
                             || el.getAttribute("title") || el.textContent.trim()))
          .map((el) => el.outerHTML)"""
    )
    assert not unlabelled, unlabelled

    # Both downloads, with the session.
    for name, content_type in (("Download the original", "image/tiff"),
                               ("Download the COG", "profile=cloud-optimized")):  # fmt: skip
        href = page.get_by_role("link", name=name).get_attribute("href")
        download = page.request.get(href)
        assert download.status == 200 and content_type in download.headers["content-type"]

    # A signed link opens the COG with no credentials at all.
    page.get_by_role("button", name="Copy a signed link").click()
    expect(page.get_by_role("status")).to_contain_text("copied")
    url = page.locator("#link-output").input_value()
    assert "token=" in url
    assert page.evaluate("navigator.clipboard.readText()") == url
    stranger = session.context.browser.new_context()
    try:
        assert stranger.request.get(url).status == 200
    finally:
        stranger.close()


def test_cancelling_a_large_conversion_shows_cancelled(visit, live_worker, tmp_path, screenshot):
    user = UserFactory()
    source = rasters.large_noise_tiff(tmp_path / "mosaic.tif", size=5000)
    with open(source, "rb") as fh:
        item = item_create(owner=user, name="mosaic.tif", file=File(fh, name="mosaic.tif"))
    page = visit().sign_in(user)
    page.get_by_role("link", name="mosaic.tif").click()

    # From the keyboard: the focus follows the buttons as they come and go.
    cancel = page.get_by_role("button", name="Cancel conversion")
    retry = page.get_by_role("button", name="Retry conversion")
    page.get_by_role("button", name="Convert", exact=True).focus()
    page.keyboard.press("Enter")
    state = page.locator("#conversion-state")
    expect(state).to_have_text("Converting", timeout=CONVERSION_TIMEOUT_MS)
    expect(page.locator("#conversion-stage")).to_have_text(re.compile(r"\w"))
    if screenshot.enabled:  # the docs' picture shows the time left; the test needs it not
        eta = page.locator("#conversion-eta").filter(has_text=re.compile("^About"))
        eta.wait_for(timeout=CONVERSION_TIMEOUT_MS)
    screenshot(page, "workspace-converting")
    expect(cancel).to_be_focused()
    page.keyboard.press("Enter")
    expect(state).to_have_text("Cancelled", timeout=60_000)
    expect(page.locator("#items tr", has_text="mosaic.tif")).to_contain_text("Cancelled")
    expect(cancel).to_be_hidden()

    # Retry starts a new attempt, which can be cancelled in turn.
    expect(retry).to_be_focused()
    page.keyboard.press("Enter")
    expect(state).to_have_text(re.compile("Queued|Converting"))
    expect(cancel).to_be_focused()
    page.keyboard.press("Enter")
    expect(state).to_have_text("Cancelled", timeout=60_000)
    from geoconvert.models import Conversion

    assert Conversion.objects.filter(item_id=item.pk, state="CANCELLED").count() == 2


def test_a_second_user_sees_none_of_the_first_users_items(visit, transactional_db):
    owner = UserFactory()
    folder = item_create(owner=owner, name="Owner's secret folder")
    secret = item_create(owner=owner, name="owner-secret.tif", file=ContentFile(b"x" * 64))

    page = visit().sign_in(UserFactory())
    expect(page.get_by_text("This folder is empty")).to_be_visible()
    assert "secret" not in page.content()
    listed = page.request.get("/api/v1/tree-items/").json()
    assert listed["count"] == 0

    for fragment in (f"#folder={folder.pk}", f"#item={secret.pk}"):
        page.goto(f"/{fragment}")
        expect(page.get_by_role("alert")).to_contain_text("Item not found.")
        expect(page.locator("#details")).to_be_hidden()
        assert "secret" not in page.locator("main").inner_text()


def test_the_bar_shows_the_streams_stage_and_time_left(visit, transactional_db):
    """The page as a client of the stream's contract alone: an event with a stage, progress
    and eta_seconds is what the bar shows (and the time left counts down)."""
    user = UserFactory()
    item = item_create(owner=user, name="scan.tif", file=ContentFile(b"x" * 64))
    status = {
        "task_id": str(uuid.uuid4()), "item_id": str(item.pk), "state": "PROGRESS",
        "status": "Creating georeferenced file", "progress": 57, "eta_seconds": 95,
        "result": None, "error": None,
    }  # fmt: skip
    session = visit()
    session.context.route(
        "**/api/v1/events",
        lambda route: route.fulfill(
            status=200,
            content_type="text/event-stream",
            body=f"event: conversion\nid: 1-0\ndata: {json.dumps(status)}\n\n",
        ),
    )
    page = session.sign_in(user)
    expect(page.locator("#items tr", has_text="scan.tif")).to_contain_text("Converting, 57%")
    page.get_by_role("link", name="scan.tif").click()
    expect(page.get_by_label("Conversion progress")).to_have_attribute("value", "57")
    expect(page.locator("#conversion-stage")).to_have_text("Creating georeferenced file")
    expect(page.locator("#conversion-eta")).to_have_text(re.compile(r"^About 1 min \d+ s left$"))
    expect(page.get_by_role("button", name="Cancel conversion")).to_be_visible()


def test_a_raster_without_georeferencing_is_placed_by_crs_and_bounds(visit, live_worker, tmp_path):
    user = UserFactory()
    with open(rasters.ungeoreferenced_png(tmp_path / "scan.png"), "rb") as fh:
        item_create(owner=user, name="scan.png", file=File(fh, name="scan.png"))
    page = visit().sign_in(user)
    page.get_by_role("link", name="scan.png").click()

    page.get_by_label("CRS of the bounds").fill("EPSG:4326")
    page.get_by_label("West").fill("15")
    page.get_by_label("South").fill("45")
    page.get_by_role("button", name="Convert", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("all four bounds")

    page.get_by_label("East").fill("15.5")
    page.get_by_label("North").fill("45.5")
    page.get_by_role("button", name="Convert", exact=True).click()
    expect(page.locator("#conversion-state")).to_have_text(
        "Converted", timeout=CONVERSION_TIMEOUT_MS
    )
    metadata = page.locator("#metadata")
    expect(metadata).to_contain_text("EPSG:4326")
    expect(metadata).to_contain_text("W 15, S 45, E 15.5, N 45.5")
    expect(page.locator(".raster-tiles img.leaflet-tile-loaded").first).to_be_visible()


def test_a_folder_is_converted_as_a_batch_and_followed(visit, live_worker, tmp_path, screenshot):
    user = UserFactory()
    survey = item_create(owner=user, name="Survey")
    for name, make in (("a.tif", rasters.rgb_byte_tiff), ("b.tif", rasters.palette_tiff)):
        with open(make(tmp_path / name), "rb") as fh:
            item_create(owner=user, name=name, parent=survey, file=File(fh, name=name))
    item_create(owner=user, name="notes.txt", parent=survey, file=ContentFile(b"field notes"))
    session = visit()
    page = session.sign_in(user)
    expect(page.get_by_role("button", name="Convert every file in this folder")).to_be_hidden()
    page.get_by_role("link", name="Survey").click()

    page.get_by_role("button", name="Convert every file in this folder").click()

    expect(page.locator("#notice")).to_have_text("Converting 3 files of this folder.")
    expect(page.locator("#batch-text")).to_have_text(
        "Done: 2 converted, 1 failed.", timeout=CONVERSION_TIMEOUT_MS
    )
    expect(page.get_by_label("Folder conversion")).to_have_attribute("value", "100")
    expect(page.get_by_role("button", name="Cancel the folder's conversion")).to_be_hidden()
    rows = page.locator("#items tr")
    expect(rows.filter(has_text="a.tif")).to_contain_text("Converted")
    expect(rows.filter(has_text="notes.txt")).to_contain_text("Failed")
    screenshot(page, "workspace-batch")
    # Converting it again starts nothing new for what is converted.
    page.get_by_role("button", name="Convert every file in this folder").click()
    expect(page.locator("#notice")).to_have_text(
        "Converting 1 file of this folder (2 converted or converting already)."
    )
