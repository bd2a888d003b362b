"""The demo's HTML report opened in a real browser (headless Chromium): the embedded figures are
there, decode to real images, and are drawn on the page."""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from meddinov3.demo.html import Report, figure_html, paragraph_html, table_html

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)
# Headless Chromium or Chrome under the names their packages install.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BROWSER_TIMEOUT_S = 90


def running_under_ci() -> bool:
    """CI services set CI (GitHub, GitLab, ... set CI=true; `.ci/run` sets it too)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium() -> str:
    """The browser on PATH. Without one the test is skipped on a user's machine, saying how to get
    one, and fails under CI, where a skip would silently drop the real-browser check."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    message = (
        f"the HTML report is checked in a real browser, and none is on PATH (looked for {', '.join(BROWSERS)}). "
        "Install one and rerun: `sudo apt-get install chromium` (Debian/Ubuntu), `sudo dnf install chromium` "
        "(Fedora), `brew install --cask chromium` (macOS, then link its binary onto PATH as `chromium`); without "
        "root, put any Chromium or Chrome binary on PATH under one of those names."
    )
    if running_under_ci():
        pytest.fail(f"{message} (CI is set: a missing browser fails here instead of skipping)", pytrace=False)
    pytest.skip(message)


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=BROWSER_TIMEOUT_S)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


def dump_dom(html: Path, profile: Path) -> str:
    return run_chromium(["--dump-dom", html.resolve().as_uri()], profile).stdout


def screenshot(html: Path, png: Path, profile: Path, size: tuple[int, int] = (1200, 1600)) -> np.ndarray:
    run_chromium([f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()], profile)
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB"))


class ImageCollector(HTMLParser):
    """The attributes of every <img> in a document."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})


def images_in(dom: str) -> list[dict[str, str]]:
    collector = ImageCollector()
    collector.feed(dom)
    return collector.images


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def decoded_data_png(src: str) -> bytes:
    match = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
    assert match, f"not an embedded PNG: {src[:60]}"
    return base64.b64decode(match.group(1), validate=True)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def solid(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def colour_pixels(shot: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    return int((np.abs(shot.astype(int) - np.array(colour)).max(axis=-1) <= tolerance).sum())


@pytest.fixture
def report_file(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int]]]:
    """A report with two figures of known size and colour, a table and a hostile caption."""
    red = write_png(tmp_path / "red.png", solid(120, 200, (220, 20, 30)))
    blue = write_png(tmp_path / "blue.png", solid(90, 160, (20, 40, 230)))
    report = Report("demo report <test>")
    report.add("Figures", figure_html(red, "a red figure"), figure_html(blue, 'caption with <script>alert(1)</script>'))
    report.add("Numbers", table_html(["organ", "DSC %"], [["liver", 93.456], ["spleen", "n/a"]]),
               paragraph_html("5 < 6 & 7 > 2", note=True))
    path = report.write(tmp_path / "out" / "report.html")
    return path, {"red": (200, 120), "blue": (160, 90)}


def test_browser_dom_holds_the_embedded_figures(report_file, tmp_path):
    path, sizes = report_file
    dom = dump_dom(path, tmp_path / "profile")
    images = images_in(dom)
    assert len(images) == 2
    decoded = [png_size(decoded_data_png(img["src"])) for img in images]
    assert decoded == [sizes["red"], sizes["blue"]]
    assert images[0]["alt"] == "a red figure"
    # The caption is text, not markup: no script element reached the page.
    assert "<script>" not in dom.split("<body>", 1)[1].replace("&lt;script&gt;", "")
    assert "93.46" in dom and "spleen" in dom


def test_browser_draws_the_figures(report_file, tmp_path):
    path, sizes = report_file
    shot = screenshot(path, tmp_path / "shot.png", tmp_path / "profile")
    assert shot.shape[0] >= 1000 and shot.shape[1] >= 1000
    # Every pixel of each figure is on screen in its colour (images are drawn at natural size).
    for name, colour in (("red", (220, 20, 30)), ("blue", (20, 40, 230))):
        width, height = sizes[name]
        assert colour_pixels(shot, colour) >= 0.95 * width * height, f"{name} figure not drawn"


def test_report_is_one_self_contained_file(report_file):
    path, _ = report_file
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](?!data:)""", text), "the report must not reference external files"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"], "no temporary files left"
