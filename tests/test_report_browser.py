"""The report in a real browser: headless Chromium loads it, renders every plot and the table.

Two Chromium runs per report: ``--dump-dom`` on a copy of the page with a small script that, on
``load``, writes what rendered into the DOM (images decoded with a natural width, images laid out
wide, table rows); and ``--screenshot`` of the page itself, checked for content (many colours,
the optimizers' bar colours present). Skipped, with the reason, when Chromium is not installed
(``python3 dev.py test`` installs it on Debian: packages chromium and chromium-driver).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from optimlab.lab.report.style import COLORS
from optimlab.lab.report.sweep_report import write_report
from optimlab.lab.running.store import Store
from tests import report_data as rd

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

def probe_script(fields: dict[str, str]) -> str:
    """A script that, once the page has loaded, writes what it found as JSON into a
    ``<pre id="browser-check">``: its images (how many, decoded, laid out wide) and ``fields``
    (name -> a JavaScript expression)."""
    extra = "".join(f"\n    {name}: {expression}," for name, expression in fields.items())
    return """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const result = {
    images: images.length,
    decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    laid_out: images.filter(i => i.getBoundingClientRect().width > 400).length,""" + extra + """
  };
  const marker = document.createElement("pre");
  marker.id = "browser-check";
  marker.textContent = JSON.stringify(result);
  document.body.appendChild(marker);
});
</script>"""


PROBE = probe_script({"rows": 'document.querySelectorAll("#ranking tbody tr").length',
                      "table_height": 'document.querySelector("#ranking").getBoundingClientRect().height'})


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1400,3000", *args],
                          capture_output=True, text=True, timeout=120)


def rendered(tmp: Path, page: Path) -> dict:
    """What the probe script found after the page loaded."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = chromium(tmp, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="browser-check">([^<]*)</pre>', done.stdout)
    assert found, f"the probe did not run; chromium said: {done.stderr[-2000:]}"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    with Store(folder / "results.sqlite") as store:
        rd.fill(store)
        return write_report(store, rd.SWEEP, folder / "report")


def test_plots_and_table_render(page, tmp_path):
    found = rendered(tmp_path, page)
    assert found == {**found, "images": 4, "decoded": 4, "laid_out": 4, "rows": 4}
    assert found["table_height"] > 100


def test_a_broken_plot_is_caught(page, tmp_path):
    broken = tmp_path / "index.html"
    html = page.read_text(encoding="utf-8")
    broken.write_text(re.sub(r'src="data:image/png;base64,[^"]{100}', 'src="data:image/png;base64,AAAA', html,
                             count=1), encoding="utf-8")
    found = rendered(tmp_path, broken)
    assert found["images"] == 4 and found["decoded"] == 3


def test_screenshot_shows_the_plots(page, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1400, 3000)
        pixels = image.convert("RGB")
        colors = pixels.getcolors(1 << 22)
    assert len(colors) > 1000  # text, plots and table: not a blank or error page
    counts = {color: count for count, color in colors}
    for name in ("adam", "momentum", "sgd"):  # their bars in the steps-to-target plot are solid blocks
        rgb = tuple(int(COLORS[name][i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 2000, f"{name}'s colour {COLORS[name]} is missing from the screenshot"
