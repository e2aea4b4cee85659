"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real `serve`
and a real RTSP camera: what an operator sees, plus the same through the API. Screenshots go to
artifacts/screenshots/ for a person to look at."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from conftest import SERVE, encode_h264_lossless, free_port, quiet_env
from support import wait_for

pytestmark = pytest.mark.ped2

REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
LOW = ("--alert-on", "0.05", "--alert-off", "0.04")  # the tiny test model alerts on anything at these


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is needed (bash scripts/setup.sh test installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page: {e}"))

    def goto(self, route: str) -> None:
        self.page.goto(f"{self.base}/#{route}")

    def number(self, selector: str, attribute: str) -> int:
        value = self.page.get_attribute(selector, f"data-{attribute}")
        return int(value) if value else 0

    def wait_number_above(self, selector: str, attribute: str, floor: int, timeout_s: float) -> int:
        self.page.wait_for_function(
            "([s, a, n]) => { const e = document.querySelector(s); return e && Number(e.dataset[a] || 0) > n; }",
            arg=[selector, attribute, floor], timeout=timeout_s * 1000,
        )  # fmt: skip
        return self.number(selector, attribute)

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


def ped2_clip(ped2: Path, name: str, limit: int | None = None) -> np.ndarray:
    files = sorted((ped2 / "testing" / "frames" / name).glob("*.jpg"))[:limit]
    return np.stack([cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files])


@pytest.fixture(scope="module")
def bikes_mkv(ped2: Path, tmp_path_factory) -> Path:
    """Ped2 test clip 04 (a cart and bikes among walkers), 18 s, lossless H.264 for the RTSP server."""
    return encode_h264_lossless(ped2_clip(ped2, "04"), tmp_path_factory.mktemp("clips") / "ped2-04.mkv")


@pytest.fixture(scope="module")
def bikes_mp4(ped2: Path, tmp_path_factory) -> Path:
    """The same clip as an ordinary (lossy, small) MP4: what someone would upload."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg (Debian package) is needed")
    path = tmp_path_factory.mktemp("clips") / "ped2-04.mp4"
    frames = sorted((ped2 / "testing" / "frames" / "04").glob("*.jpg"))
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-framerate", "10", "-i",
         str(frames[0].parent / "%03d.jpg"), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def drop_file(page, selector: str, path: Path, mime: str) -> None:
    """A real drop event on the drop zone, carrying the file (what dragging it from a file manager does)."""
    page.evaluate(
        """async ([selector, b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const zone = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"])
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [selector, base64.b64encode(path.read_bytes()).decode(), path.name, mime],
    )


def test_dashboard_live_stream_alerts_and_upload(serve_factory, rtsp_factory, browser, bikes_mkv, bikes_mp4) -> None:
    rtsp = rtsp_factory(bikes_mkv)
    server = serve_factory(*LOW)
    ui = Page(browser, server.base)
    page = ui.page
    try:
        # Streams: add the camera through the form.
        ui.goto("/streams")
        page.fill("#add-stream input[name=url]", rtsp.url)
        page.fill("#add-stream input[name=name]", "plaza")
        page.fill("#add-stream input[name=alert_on]", "0.05")
        page.fill("#add-stream input[name=alert_off]", "0.04")
        page.click("#add-stream button[type=submit]")
        card = page.wait_for_selector(".card[data-stream]", timeout=10_000)
        stream_id = card.get_attribute("data-stream")
        spark = f".card[data-stream='{stream_id}'] canvas.spark"
        ui.wait_number_above(spark, "received", 5, 30)
        page.wait_for_function("/^[0-9.]+$/.test(document.querySelector('.card .stats .score').textContent)",
                               timeout=10_000)  # fmt: skip
        ui.shot("streams")

        # Stream view: the chart moves, the live picture arrives, an alert appears with its peak frame.
        page.click(f".card[data-stream='{stream_id}'] .top a")
        page.wait_for_selector("#score-chart")
        first = ui.wait_number_above("#score-chart", "points", 0, 20)
        ui.wait_number_above("#score-chart", "points", first + 5, 20)
        ui.wait_number_above("#live-picture", "loaded", 2, 20)
        page.wait_for_selector("#stream-alerts tr[data-alert] img.thumb", timeout=30_000)
        page.wait_for_function("[...document.querySelectorAll('#stream-alerts img')].every(i => i.naturalWidth > 0)",
                               timeout=10_000)  # fmt: skip
        assert page.locator("#alert-open").count() == 1 or page.locator("#stream-alerts tr[data-alert]").count() >= 1
        ui.shot("stream-view")

        # Alerts: the list with thumbnails, filtered to this stream, linking back to the stream view.
        ui.goto("/alerts")
        page.wait_for_selector("#alert-list tr[data-alert] img.thumb", timeout=10_000)
        page.select_option("#filter-stream", stream_id)
        page.click("form.filters button[type=submit]")
        page.wait_for_function(f"location.hash.includes('stream={stream_id}')")
        # The hash changes before the router swaps the view: wait for the rows the filter loaded, not the old ones.
        page.wait_for_selector(f"#alert-list[data-stream='{stream_id}'] tr[data-alert]", timeout=10_000)
        hrefs = page.eval_on_selector_all(
            "#alert-list tr[data-alert] td:nth-child(2) a", "as => as.map(a => a.getAttribute('href'))"
        )
        assert hrefs and set(hrefs) == {f"#/streams/{stream_id}"}  # one read: a live refresh may swap the rows
        page.wait_for_function("[...document.querySelectorAll('#alert-list img')].every(i => i.naturalWidth > 0)",
                               timeout=10_000)  # fmt: skip
        ui.shot("alerts")
        page.click("#alert-list tr[data-alert] .thumbs")  # a closer look
        page.wait_for_function("[...document.querySelectorAll('#lightbox img')].every(i => i.naturalWidth > 0)",
                               timeout=10_000)  # fmt: skip
        ui.shot("alert-enlarged")
        page.keyboard.press("Escape")
        page.wait_for_selector("#lightbox", state="detached", timeout=5_000)

        # Review: the operator marks the newest alert a false alarm, sees it kept, and filters by it.
        row = "#alert-list tr[data-alert]"
        alert_id = int(page.get_attribute(row, "data-alert"))
        page.click(f"#alert-list tr[data-alert='{alert_id}'] button.verdict:has-text('False alarm')")
        page.wait_for_selector(f"#alert-list tr[data-alert='{alert_id}'] .review[data-verdict='false_alarm']",
                               timeout=10_000)  # fmt: skip
        with server.client() as c:
            assert c.get(f"/api/alerts/{alert_id}").json()["verdict"] == "false_alarm"
        page.select_option("#filter-verdict", "false_alarm")
        page.click("form.filters button[type=submit]")
        page.wait_for_function("location.hash.includes('verdict=false_alarm')")
        page.wait_for_selector("#alert-list[data-count='1']", timeout=10_000)
        assert page.get_attribute(row, "data-alert") == str(alert_id)
        assert page.get_attribute(f"{row} button.verdict.on", "aria-pressed") == "true"
        ui.shot("alert-reviewed")
        # another operator confirms it: this page, filtered on false alarms, drops the row by itself (the review's
        # /ws/alerts message; quicker than the 5 s refresh of open alerts)
        with server.client() as c:
            assert c.patch(f"/api/alerts/{alert_id}", json={"verdict": "confirmed"}).status_code == 200
        page.wait_for_selector("#alert-list[data-count='0']", timeout=2_500)

        # Clips: drop a video, watch it being scored, click the timeline, see that frame and its heatmap.
        ui.goto("/clips")
        page.wait_for_selector("#drop-zone")
        drop_file(page, "#drop-zone", bikes_mp4, "video/mp4")
        page.wait_for_function("location.hash.startsWith('#/clips/') && location.hash.length > 9", timeout=30_000)
        clip_id = page.evaluate("location.hash.split('/')[2]")
        page.wait_for_function("document.querySelector('#clip-status')?.textContent === 'done'", timeout=90_000)
        with server.client() as c:
            result = c.get(f"/api/clips/{clip_id}").json()
        assert result["status"] == "done" and result["frames_scored"] == 176
        assert ui.number("#clip-chart", "points") == 176
        assert ui.number("#clip-chart", "segments") == len(result["summary"]["anomalous_segments"]) >= 1
        box = page.locator("#clip-chart").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
        page.wait_for_selector("#clip-frame[data-frame]", timeout=10_000)
        page.wait_for_function(
            "['#clip-frame-picture', '#clip-frame-heatmap'].every(s => document.querySelector(s)?.naturalWidth > 0)",
            timeout=10_000,
        )
        frame = int(page.get_attribute("#clip-frame", "data-frame"))
        assert frame in {s["frame"] for s in result["scores"]} and 90 < frame < 130
        ui.shot("clip")
        page.keyboard.press("ArrowRight")  # step to the next scored frame
        page.wait_for_function(f"document.querySelector('#clip-frame').dataset.frame === '{frame + 1}'",
                               timeout=10_000)  # fmt: skip

        # Remove the stream (two clicks, no dialog): its card goes.
        ui.goto("/streams")
        remove = page.locator(f".card[data-stream='{stream_id}'] button.danger")
        remove.click()
        page.wait_for_timeout(1500)  # a refresh of the list in between must not disarm it
        remove.click()
        page.wait_for_selector(f".card[data-stream='{stream_id}']", state="detached", timeout=10_000)
        with server.client() as c:
            assert c.get(f"/api/streams/{stream_id}").status_code == 404
        assert ui.errors == [], ui.errors
    finally:
        ui.close()


def test_dashboard_calibrates_a_stream_on_its_own_footage(serve_factory, rtsp_factory, browser, ped2, tmp_path) -> None:
    """An operator calibrates a camera from its page: 3 s of normal footage (30 frames at 10 fps), the
    progress while collecting, the fit (on how many frames, when), the chart's threshold lines at the
    stream's new thresholds as GET /api/streams has them, then Reset back to the checkpoint's. Bad input,
    an unreachable service and a collection already running (409) show as messages on the page."""
    rtsp = rtsp_factory(encode_h264_lossless(ped2_clip(ped2, "01"), tmp_path / "ped2-01.mkv"))  # walkers, 18 s
    server = serve_factory()  # the checkpoint's thresholds: a fit moves them (explicit ones would win)
    with server.client() as c:
        sid = c.post("/api/streams", json={"url": rtsp.url, "name": "plaza"}).json()["id"]
        model = c.get("/api/models").json()["models"][0]["calibration"]
    path = f"/api/streams/{sid}/calibration"

    def row() -> dict:
        with server.client() as c:
            return next(s for s in c.get("/api/streams").json() if s["id"] == sid)

    def chart_shows(alert: dict) -> None:  # the dashed lines drawn are the stream's thresholds
        page.wait_for_function(
            "([on, off]) => { const d = document.querySelector('#score-chart').dataset;"
            " return Number(d.on) === on && Number(d.off) === off; }",
            arg=[alert["on"], alert["off"]], timeout=10_000,
        )  # fmt: skip

    ui = Page(browser, server.base)
    page = ui.page
    seconds, submit = "#calibrate-form input[name=seconds]", "#calibrate-form button[type=submit]"
    error = "#calibration-error"
    try:
        ui.goto(f"/streams/{sid}")
        page.wait_for_selector("#calibration[data-state='model']", timeout=10_000)
        assert page.input_value(seconds) == "60"  # the default asked for
        assert page.text_content("#calibration-state") == "checkpoint's calibration"
        ui.wait_number_above("#score-chart", "points", 0, 30)
        assert (row()["alert"]["on"], row()["alert"]["off"]) == (model["alert_on"], model["alert_off"])
        chart_shows(row()["alert"])

        # mistakes: out of bounds (refused on the page), the service unreachable (the request fails)
        page.fill(seconds, "1")
        page.click(submit)
        page.wait_for_selector(f"{error}:has-text('from 2 to 3600')", timeout=5_000)
        page.route(f"**{path}", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
        page.fill(seconds, "3")
        page.click(submit)
        page.wait_for_selector(f"{error}:has-text('could not be reached')", timeout=5_000)
        page.unroute(f"**{path}")
        assert row()["calibration"] == "model"
        invalid = page.evaluate(  # the page's own API client module (the same instance: one module map per page)
            f"import('/static/api.js').then(({{ api }}) => api('{path}', {{ method: 'POST', json: {{ seconds: 1 }} }}))"
            ".catch((e) => e.message)"
        )
        assert invalid == "seconds: Input should be greater than or equal to 2"  # a 422's detail, readable

        # calibrate: collecting with its progress, then fitted, and the threshold lines move
        page.click(submit)
        page.wait_for_function(
            "(() => { const p = Number(document.querySelector('#calibration').dataset.progress);"
            " return p > 0 && p < 1; })()",
            timeout=20_000,
        )  # fmt: skip
        assert page.is_visible("#calibration-progress") and page.text_content(error) == ""
        assert page.text_content("#calibration-state").startswith("calibrating ")
        assert "of 30 frames collected" in page.text_content("#calibration-detail")
        ui.shot("calibration-collecting")
        page.wait_for_selector("#calibration[data-state='fitted']", timeout=30_000)
        with server.client() as c:
            state = c.get(path).json()
        fitted = row()
        assert state["state"] == fitted["calibration"] == "fitted" and state["frames"] == 30
        assert (fitted["alert"]["on"], fitted["alert"]["off"]) == (state["calibration"]["alert_on"],
                                                                  state["calibration"]["alert_off"])  # fmt: skip
        assert fitted["alert"]["on"] != model["alert_on"]
        chart_shows(fitted["alert"])
        assert f"alert on {fitted['alert']['on']:.3f} / off {fitted['alert']['off']:.3f}" in page.text_content(
            "#stream-head"
        )
        assert page.text_content("#calibration-state") == "calibrated on this camera"
        assert "fitted on 30 frames of this camera" in page.text_content("#calibration-detail")
        assert not page.is_visible("#calibration-progress")
        ui.shot("calibration-fitted")

        # another client starts one just as the operator clicks: the service's 409, then its collection shown
        def start_elsewhere(route) -> None:
            if route.request.method == "POST":
                with server.client() as c:
                    assert c.post(path, json={"seconds": 2}).status_code == 202
            route.continue_()

        page.route(f"**{path}", start_elsewhere)
        page.click(submit)
        page.wait_for_selector(f"{error}:has-text('already collecting')", timeout=5_000)
        assert "HTTP 409" in page.text_content(error)
        assert page.get_attribute("#calibration", "data-state") == "collecting"
        page.unroute(f"**{path}")
        page.wait_for_selector("#calibration[data-state='fitted']", timeout=30_000)
        refitted = row()
        assert refitted["calibration"] == "fitted"
        chart_shows(refitted["alert"])

        # Reset (two clicks): back to the checkpoint's calibration and thresholds
        reset = page.locator("#calibration button.danger")
        reset.click()
        reset.click()
        page.wait_for_selector("#calibration[data-state='model']", timeout=10_000)
        reverted = row()
        assert reverted["calibration"] == "model"
        assert (reverted["alert"]["on"], reverted["alert"]["off"]) == (model["alert_on"], model["alert_off"])
        chart_shows(reverted["alert"])
        assert page.locator("#calibration button.danger").count() == 0 and page.is_visible(submit)
        ui.goto("/streams")
        page.wait_for_selector(f".card[data-stream='{sid}'] .pill.calibration:has-text('checkpoint')", timeout=10_000)
        ui.shot("calibration-streams")
        # the browser logs the requests made to fail, nothing else
        provoked = [
            e for e in ui.errors if "Failed to load resource" in e and any(x in e for x in ("409", "422", "ERR_FAILED"))
        ]
        assert len(provoked) <= 3 and [e for e in ui.errors if e not in provoked] == [], ui.errors
    finally:
        ui.close()


def test_dashboard_masks_part_of_a_stream(serve_factory, browser, h264_clip) -> None:
    """An operator masks the top-right corner by clicking its corners on the live picture: the polygon saved is
    where the clicks were; a mask that leaves too little is refused with the service's reason and nothing
    changes; another operator's change arrives over the WebSocket; Clear all and Save remove it."""
    server = serve_factory("--stream", str(h264_clip))
    with server.client() as c:
        sid = wait_for(lambda: c.get("/api/streams").json(), 10, message="stream")[0]["id"]

    def mask() -> dict:
        with server.client() as c:
            return c.get(f"/api/streams/{sid}/mask").json()

    ui = Page(browser, server.base)
    page = ui.page

    def draw(*corners: tuple[float, float]) -> None:
        box = page.locator("#live-picture").bounding_box()
        for x, y in corners:
            page.click("#live-picture", position={"x": x * box["width"], "y": y * box["height"]})

    try:
        ui.goto(f"/streams/{sid}")
        page.wait_for_selector("#mask[data-state='none']", timeout=10_000)
        assert "whole frame" in page.text_content("#mask-detail")
        ui.wait_number_above("#live-picture", "loaded", 0, 30)
        page.click("#mask-edit")
        page.wait_for_selector("#mask[data-state='drawing']")
        assert page.is_disabled("#mask-close")
        corner = [(0.7, 0.02), (0.98, 0.02), (0.98, 0.2), (0.7, 0.2)]
        draw(*corner)
        page.click("#mask-close")
        assert "1 closed, 0 corners open" in page.text_content("#mask-detail")
        ui.shot("mask-drawing")
        page.click("#mask-save")
        page.wait_for_selector("#mask[data-state='masked']", timeout=10_000)
        saved = mask()
        assert len(saved["polygons"]) == 1 and np.allclose(saved["polygons"][0], corner, atol=0.01), saved
        assert f"looks at {round(saved['watched'] * 100)} % of the frame" in page.text_content("#mask-detail")
        assert 0.9 < saved["watched"] < 0.96

        # too much masked: the service's reason on the page, and the saved mask stays
        page.click("#mask-edit")
        page.click("#mask-clear")
        draw((0.01, 0.01), (0.99, 0.01), (0.99, 0.99), (0.01, 0.99))
        page.click("#mask-save")  # an open shape of 3+ corners is saved as one more polygon
        page.wait_for_selector("#mask-error:has-text('at least 10% must stay watched')", timeout=5_000)
        assert "HTTP 422" in page.text_content("#mask-error")
        page.click("#mask-cancel")
        assert page.get_attribute("#mask", "data-state") == "masked" and mask() == saved

        # another operator adds an area: the page follows the stream's `mask` message
        with server.client() as c:
            both = [saved["polygons"][0], [[0, 0.8], [0.3, 0.8], [0.3, 1], [0, 1]]]
            assert c.put(f"/api/streams/{sid}/mask", json={"polygons": both}).status_code == 200
        page.wait_for_selector("#mask[data-polygons='2']", timeout=10_000)
        assert "2 areas ignored" in page.text_content("#mask-detail")
        ui.wait_number_above("#live-picture", "loaded", ui.number("#live-picture", "loaded"), 10)
        ui.shot("mask-saved")

        # a recording of this camera, uploaded to be scored as the stream: with its mask
        ui.goto("/clips")
        page.wait_for_selector(f"#clip-stream option[value='{sid}']", state="attached", timeout=10_000)
        page.select_option("#clip-stream", sid)
        drop_file(page, "#drop-zone", h264_clip, "video/x-matroska")
        page.wait_for_function("location.hash.startsWith('#/clips/') && location.hash.length > 9", timeout=30_000)
        clip_id = page.evaluate("location.hash.split('/')[2]")
        page.wait_for_function("document.querySelector('#clip-status')?.textContent === 'done'", timeout=60_000)
        assert f"scored as stream {sid}" in page.text_content("#clip-summary")
        with server.client() as c:
            assert c.get(f"/api/clips/{clip_id}?scores=false").json()["stream"] == sid
        ui.goto(f"/streams/{sid}")
        page.wait_for_selector("#mask[data-polygons='2']", timeout=10_000)

        page.click("#mask-edit")
        page.click("#mask-clear")
        page.click("#mask-save")
        page.wait_for_selector("#mask[data-state='none']", timeout=10_000)
        assert mask() == {"polygons": [], "watched": 1.0}
        provoked = [e for e in ui.errors if "Failed to load resource" in e and "422" in e]
        assert len(provoked) <= 1 and [e for e in ui.errors if e not in provoked] == [], ui.errors
    finally:
        ui.close()


def test_pictures_and_history_through_the_api(serve_factory, h264_clip) -> None:
    """Everything the page shows is in the documented API: live JPEG, heatmap PNG of the same size, score
    history, alerts with their stored peak frame, and the OpenAPI document lists them."""
    server = serve_factory("--stream", str(h264_clip), *LOW)
    with server.client() as c:
        sid = wait_for(lambda: c.get("/api/streams").json(), 10, message="start stream")[0]["id"]
        wait_for(lambda: c.get(f"/api/streams/{sid}").json()["frames_scored"] >= 5, 30, message="scores")
        r = c.get(f"/api/streams/{sid}/frame.jpg")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and int(r.headers["x-frame"]) >= 4
        plain = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert plain.shape == (240, 360, 3)  # the camera's picture, not the 32x48 model input
        over = cv2.imdecode(np.frombuffer(c.get(f"/api/streams/{sid}/frame.jpg?overlay=1").content, np.uint8), 1)
        assert over.shape == plain.shape
        small = c.get(f"/api/streams/{sid}/frame.jpg", params={"width": 180})
        assert cv2.imdecode(np.frombuffer(small.content, np.uint8), 1).shape == (120, 180, 3)
        heat = c.get(f"/api/streams/{sid}/heatmap.png")
        assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
        rgba = cv2.imdecode(np.frombuffer(heat.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (240, 360, 4) and rgba[:, :, 3].max() > 0
        history = c.get(f"/api/streams/{sid}/scores", params={"limit": 3}).json()
        assert len(history) == 3 and [h["frame"] for h in history] == sorted(h["frame"] for h in history)
        alert = wait_for(lambda: c.get("/api/alerts", params={"stream": sid}).json()["items"], 30, message="alert")[0]
        assert alert["thumbnail_url"] == f"/api/alerts/{alert['id']}/thumbnail.jpg"
        thumb = c.get(alert["thumbnail_url"])
        heat = c.get(alert["heatmap_url"])
        assert thumb.headers["content-type"] == "image/jpeg" and heat.headers["content-type"] == "image/png"
        t = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), 1)
        hm = cv2.imdecode(np.frombuffer(heat.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert t.shape[:2] == hm.shape[:2] and t.shape[1] <= 320
        assert c.get(f"/api/alerts/{alert['id']}").json()["peak_frame"] == alert["peak_frame"]
        for path in ("/api/streams/nope/frame.jpg", "/api/alerts/999999/thumbnail.jpg", "/api/alerts/999999"):
            assert c.get(path).status_code == 404
        paths = c.get("/openapi.json").json()["paths"]
        assert "/" not in paths
    for p in ("/api/streams/{stream_id}/frame.jpg", "/api/streams/{stream_id}/heatmap.png",
              "/api/streams/{stream_id}/scores", "/api/alerts/{alert_id}/thumbnail.jpg",
              "/api/alerts/{alert_id}/heatmap.png", "/api/clips/{clip_id}/frames/{frame}.jpg",
              "/api/clips/{clip_id}/frames/{frame}/heatmap.png", "/api/clips"):  # fmt: skip
        assert p in paths, p
    index = httpx.get(f"{server.base}/")
    assert index.status_code == 200 and "/static/app.js" in index.text
    assert (
        httpx.get(f"{server.base}/static/app.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )


def test_dashboard_with_api_token(serve_factory, browser, h264_clip) -> None:
    """With a token configured the page asks for it, keeps it, and its WebSockets pass it as a subprotocol."""
    server = serve_factory("--stream", str(h264_clip), token="s3cret")
    ui = Page(browser, server.base)
    page = ui.page
    try:
        ui.goto("/streams")
        page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
        assert page.locator(".card[data-stream]").count() == 0
        page.fill("#token-input", "s3cret")
        refused = list(ui.errors)  # the refused requests that made the page ask, logged by the browser
        page.click("#token-form button[type=submit]")
        card = page.wait_for_selector(".card[data-stream]", timeout=10_000)
        spark = f".card[data-stream='{card.get_attribute('data-stream')}'] canvas.spark"
        ui.wait_number_above(spark, "received", 3, 30)  # scores over the WebSocket: the subprotocol token worked
        assert page.evaluate("localStorage.getItem('mnad.token')") == "s3cret"
        ui.shot("streams-token")
        assert all("401" in e for e in refused), refused
        assert ui.errors == refused, ui.errors
    finally:
        ui.close()
    # the same handshake from any client: the right token as a subprotocol is accepted, a wrong one refused
    from websockets.sync.client import connect

    sid = httpx.get(f"{server.base}/api/streams", headers=server.headers()).json()[0]["id"]
    url = f"{server.ws_base}/ws/streams/{sid}"

    def offer(token: str) -> list[str]:
        return ["mnad.bearer", "mnad.token." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")]

    with connect(url, subprotocols=offer("s3cret"), open_timeout=10) as ws:
        assert ws.subprotocol == "mnad.bearer" and json.loads(ws.recv(timeout=10))["stream"] == sid
    with pytest.raises(Exception), connect(url, subprotocols=offer("wrong"), open_timeout=10) as ws:  # noqa: B017
        ws.recv(timeout=5)


def test_sensitivity_from_the_models_validation_fills_the_thresholds(serve_factory, browser) -> None:
    """The add-stream form lists the operating points the model's validation measured; picking the 97th
    percentile fills its thresholds, and the stream it adds alerts at them."""
    server = serve_factory()
    model = httpx.get(f"{server.base}/api/models").json()["models"][0]
    points = model["provenance"]["validation"]["levels"]  # the tiny model's train measured them
    pick = next(i for i, p in enumerate(points) if p["level"] == [0.97, 0.93])
    ui = Page(browser, server.base)
    page = ui.page
    try:
        ui.goto("/streams")
        page.wait_for_function("document.querySelectorAll('#add-stream select[name=level] option').length > 1")
        labels = page.eval_on_selector_all("#add-stream select[name=level] option", "os => os.map(o => o.textContent)")
        assert labels[0] == "the model's thresholds" and len(labels) == len(points) + 1
        assert labels[pick + 1].startswith(f"97/93: {points[pick]['detected']}/{points[pick]['events']} events")
        page.select_option("#add-stream select[name=level]", str(pick))
        assert float(page.input_value("#add-stream input[name=alert_on]")) == points[pick]["alert_on"]
        assert float(page.input_value("#add-stream input[name=alert_off]")) == points[pick]["alert_off"]
        page.fill("#add-stream input[name=url]", f"rtsp://127.0.0.1:{free_port()}/nobody")  # a camera that is off
        page.fill("#add-stream input[name=name]", "gate")
        page.click("#add-stream button[type=submit]")
        page.wait_for_selector(".card[data-stream]", timeout=10_000)
        assert page.input_value("#add-stream input[name=alert_on]") == ""  # the form is ready for the next one
        stream = httpx.get(f"{server.base}/api/streams").json()[0]
        assert (stream["alert"]["on"], stream["alert"]["off"]) == (points[pick]["alert_on"], points[pick]["alert_off"])
        ui.shot("streams-sensitivity")
        assert ui.errors == [], ui.errors
    finally:
        ui.close()


def test_newcomer_sees_live_scores_within_10_s(browser, models_dir, h264_clip, tmp_path) -> None:
    """README: `serve --stream video.mp4`, open the page: a live score within 10 s of starting the command.
    With the shipped weights when present (what a newcomer runs), else the tiny test model."""
    shipped = Path(os.environ.get("MNAD_SHIPPED_WEIGHTS", REPO / "weights"))
    models = shipped if (shipped / "ped2.safetensors").is_file() else models_dir
    port = free_port()
    log = tmp_path / "serve.log"
    started = time.monotonic()
    proc = subprocess.Popen(
        [SERVE, "--stream", str(h264_clip), "--port", str(port), "--models-dir", str(models),
         "--data-dir", str(tmp_path / "data")],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=quiet_env(), cwd=tmp_path,
    )  # fmt: skip
    ui = Page(browser, f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 10, interval=0.05, message="the port")
        ui.goto("/")
        ui.page.wait_for_function(
            "/^[0-9.]+$/.test(document.querySelector('.card .stats .score')?.textContent || '')",
            timeout=max(1, 10 - (time.monotonic() - started)) * 1000,
        )
        elapsed = time.monotonic() - started
        print(f"first live score on the page {elapsed:.1f} s after starting serve (models: {models})")
        ui.shot("newcomer")
        assert elapsed < 10, f"first live score after {elapsed:.1f} s"
        assert ui.errors == [], ui.errors
    finally:
        ui.close()
        proc.terminate()
        proc.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_shipped_model_alerts_when_a_bike_rides_through(serve_factory, rtsp_factory, browser, ped2, tmp_path) -> None:
    """The shipped Ped2 model with its calibrated thresholds on Ped2 test clip 02 over RTSP: walkers only
    for 94 frames, then a cyclist (frames 94-179 are labelled anomalous). An alert appears on the page,
    with its peak frame and heatmap."""
    weights = Path(os.environ.get("MNAD_SHIPPED_WEIGHTS", REPO / "weights"))  # a folder holding ped2.safetensors
    if not (weights / "ped2.safetensors").is_file():
        pytest.skip("the shipped checkpoint weights/ped2.safetensors is not there yet")
    rtsp = rtsp_factory(encode_h264_lossless(ped2_clip(ped2, "02"), tmp_path / "ped2-02.mkv"))
    server = serve_factory("--models-dir", str(weights), "--frame-buffer", "64")
    with server.client() as c:
        sid = c.post("/api/streams", json={"url": rtsp.url, "name": "ped2-02"}).json()["id"]
    ui = Page(browser, server.base)
    page = ui.page
    try:
        ui.goto(f"/streams/{sid}")
        page.wait_for_selector("#stream-alerts tr[data-alert] img.thumb", timeout=60_000)
        # let the cyclist ride through: the open alert's peak frame (row and pictures) follows him
        page.wait_for_function("Number(document.querySelector('#score-chart').dataset.lastFrame) >= 150",
                               timeout=60_000)  # fmt: skip
        peak_in_labels = r"/\(peak (9[4-9]|1[0-7][0-9])\)/.test(document.querySelector('#stream-alerts').textContent)"
        page.wait_for_function(peak_in_labels, timeout=15_000)
        page.wait_for_function("[...document.querySelectorAll('#stream-alerts img')].every(i => i.naturalWidth > 0)",
                               timeout=10_000)  # fmt: skip
        ui.wait_number_above("#live-picture", "loaded", 2, 20)
        ui.shot("shipped-model-alert")
        assert ui.errors == [], ui.errors
    finally:
        ui.close()
    with server.client() as c:
        first = c.get("/api/alerts", params={"stream": sid}).json()["items"][-1]
        assert c.get(first["thumbnail_url"]).status_code == 200 and c.get(first["heatmap_url"]).status_code == 200
    assert 94 <= first["peak_frame"] <= 179, first  # the peak is the cyclist, not a walker
    # Reported, not asserted: when the episode starts is the calibration's business (see the report).
    print(f"first alert: frames {first['start_frame']}-{first['end_frame']}, peak {first['peak_frame']} "
          f"(labelled anomalous: 94-179)")  # fmt: skip


def test_clip_frames_and_heatmaps_survive_a_restart(serve_factory, ffv1_clip, clip_frames, tmp_path) -> None:
    """A finished upload's frames and heatmaps come from files beside the clip, so they outlive the process."""
    data = tmp_path / "persist"
    first = serve_factory(data_dir=data)
    with first.client() as c:
        clip_id = c.post(
            "/api/clips", files={"file": ("walkers.avi", ffv1_clip.read_bytes(), "video/x-msvideo")}
        ).json()["id"]
        wait_for(lambda: c.get(f"/api/clips/{clip_id}", params={"scores": False}).json()["status"] == "done", 60,
                 message="clip done")  # fmt: skip
        live = c.get(f"/api/clips/{clip_id}/frames/30/heatmap.png").content
    first.stop()
    second = serve_factory(data_dir=data)
    with second.client() as c:
        listed = c.get("/api/clips").json()
        assert [(x["id"], x["original_name"], x["status"]) for x in listed] == [(clip_id, "walkers.avi", "done")]
        picture = c.get(f"/api/clips/{clip_id}/frames/30.jpg", params={"width": 4096})
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        decoded = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(decoded.astype(int) - clip_frames[30]).mean() < 3  # frame 30 itself (JPEG aside)
        assert c.get(f"/api/clips/{clip_id}/frames/30/heatmap.png").content == live
        assert c.get(f"/api/clips/{clip_id}/frames/30.jpg", params={"overlay": 1}).status_code == 200
        assert c.get(f"/api/clips/{clip_id}/frames/2.jpg").status_code == 404  # before the first full window
        assert c.get(f"/api/clips/{clip_id}/frames/999.jpg").status_code == 404
        assert c.get("/api/clips/nope/frames/30.jpg").status_code == 404
