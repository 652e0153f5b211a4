"""The built documentation site as a person sees it: the landing page, a guide and the
configuration reference opened in headless Chromium (screenshots and the rendered DOM).

Runs in the docs step (`make docs`, marker `docs`): it uses the site in $TFKIT_SITE_DIR when
`make docs` built it there, else builds the site itself with `mkdocs build --strict`.
Skipped, with its reason, only where no Chromium is installed. $TFKIT_SCREENSHOT_DIR keeps
the screenshots for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.docs

BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)
PAGES = {
    # page -> text the rendered page must show
    "index.html": ["tfkit", "What is in the box", "Getting started"],
    "guides/distributed/index.html": ["Distributed training", "tfkit launch", "SLURM"],
    "reference/config/index.html": ["Configuration reference", "data.source.count", "gan.ada_kimg"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    built = os.environ.get("TFKIT_SITE_DIR")
    if built and (Path(built) / "index.html").exists():
        return Path(built)
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",  # nothing leaves
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    BROWSER is None, reason="no Chromium installed (Debian: apt-get install chromium)"
)
@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_a_browser(site, page, tmp_path):
    from PIL import Image

    url = (site / page).resolve().as_uri()
    dom = _chromium(url, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in PAGES[page]:
        assert text in dom.stdout, f"{page}: {text!r} not in the rendered page"
    assert "md-header" in dom.stdout and "md-nav" in dom.stdout  # the Material theme ran
    shots = Path(os.environ.get("TFKIT_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    png = shots / (page.replace("/index.html", "").replace("/", "_").replace(".html", "") + ".png")
    shot = _chromium(url, tmp_path / "profile2", f"--screenshot={png}")
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 900)
    # the theme's coloured header bar across the top, and a page with text below it
    header = image.getpixel((640, 10))
    assert header[0] > 200 and header[2] < 120, f"header colour {header}: no styled header"
    body = image.crop((0, 120, 1280, 900))
    assert len(body.getcolors(maxcolors=1 << 20)) > 50, "the page body looks blank"
