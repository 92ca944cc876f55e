"""The rendered book in a real browser: every page of `_toc.yml` opened in headless Chromium, network off.

A page passes when its formulas are typeset by the MathJax shipped in `_build/html/_static/mathjax`
(no raw TeX left, no MathJax error), every image loads, no cell shows an error or traceback, no
resource fails to load or is asked of the network (Chromium's own request log is read), and it
holds at least the figures, tables and typeset formulas listed in EXPECTED, and no table or caption is wider
than the room it is shown in. Screenshots of every whole page go to `_build/screenshots/<page>.png` (a long
page continues in `<page>-2.png`, ...).

`make test` builds the HTML first (from the chapters nbval has just executed, see `book/conftest.py`) and
installs Chromium from Debian's packages when missing (`make browser`).
"""
from __future__ import annotations

import base64
import json
import re
import os
import shutil
from pathlib import Path

import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import REPO

HTML = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"

# Floors, page -> (figures, tables, formulas) in the article: the figures and tables of the smoke-scale
# build (GPVAE_SMOKE=1) when this test was written; formulas: 1 marks a page that has math, whose
# formulas must then all be typeset. A chapter may gain content; losing some fails here.
EXPECTED = {
    "book/intro": (1, 1, 1),
    "book/specification": (0, 1, 0),
    "book/glossary": (0, 0, 0),
    "book/training": (4, 1, 1),
    "book/baselines": (3, 2, 0),
    "book/random_function": (4, 5, 1),
    "book/readings": (5, 6, 1),
    "book/amortization_gap": (2, 2, 1),
    "book/results": (3, 2, 1),
    "book/converged": (4, 1, 1),
    "book/appendix_runs": (0, 12, 1),
    "book/reproduce": (0, 2, 0),
    "book/cli": (0, 1, 0),
    "book/external": (0, 1, 1),
}


def toc_pages() -> list[str]:
    """Every document of `_toc.yml`, root first, as paths without suffix ("book/intro")."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [str(Path(p).with_suffix("")) for p in pages]


PAGES = toc_pages()


def find_program(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through the system chromedriver, with every network request sent nowhere."""
    chromium = find_program("chromium", "chromium-browser", "google-chrome")
    chromedriver = find_program("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("Chromium or chromedriver not found: run `make browser` "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1024", "--hide-scrollbars", "--force-device-scale-factor=1",
                 # network off: no name resolves and every http(s) request goes to a closed port
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--disable-default-apps", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


# Runs in the page once loaded: waits for MathJax and the images, then reports what the checks need.
INSPECT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const report = {};
  report.mathjax = typeof MathJax !== "undefined" && !!(MathJax.startup && MathJax.startup.promise);
  if (report.mathjax) { await MathJax.startup.promise; }
  if (document.fonts && document.fonts.ready) { await document.fonts.ready; }
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(resolve => { img.addEventListener("load", resolve); img.addEventListener("error", resolve); })));
  report.brokenImages = images.filter(img => !(img.complete && img.naturalWidth > 0))
      .map(img => img.getAttribute("src"));
  const maths = Array.from(document.querySelectorAll(".math"));
  report.mathElements = maths.length;
  report.untypeset = maths.filter(el => !el.querySelector("mjx-container"))
      .map(el => el.textContent.trim().slice(0, 120));
  report.rendered = document.querySelectorAll("mjx-container").length;
  report.mathErrors = Array.from(document.querySelectorAll("mjx-merror"))
      .map(el => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 120));
  report.failedFonts = document.fonts ? Array.from(document.fonts)
      .filter(f => f.status === "error").map(f => f.family) : [];
  // visible text, outside code and outside typeset formulas
  const body = document.body.cloneNode(true);
  body.querySelectorAll("pre, code, script, style, mjx-container, .highlight").forEach(el => el.remove());
  const text = body.innerText || body.textContent;
  report.rawTex = [];
  for (const marker of ["\\(", "\\[", "$$", "\\begin{"]) {
    const at = text.indexOf(marker);
    if (at >= 0) { report.rawTex.push(text.slice(Math.max(0, at - 40), at + 80)); }
  }
  report.errorOutputs = Array.from(document.querySelectorAll(
      ".output.error, .output.traceback, .output_error, .cell_output .traceback"))
      .map(el => el.textContent.trim().slice(0, 200));
  const fullText = document.body.innerText || document.body.textContent;
  const tb = fullText.indexOf("Traceback (most recent call last)");
  report.traceback = tb >= 0 ? fullText.slice(tb, tb + 200) : null;
  const article = document.querySelector("article") || document.body;
  // a table or caption wider than the room it is shown in: the nearest box that clips or scrolls it
  // sideways (a cell's output area), else the article's column without its padding
  const styled = getComputedStyle(article);
  const column = article.clientWidth - parseFloat(styled.paddingLeft) - parseFloat(styled.paddingRight);
  const room = el => {
    for (let box = el.parentElement; box && box !== article; box = box.parentElement) {  // el's own box excluded
      if (getComputedStyle(box).overflowX !== "visible") { return box.clientWidth; }
    }
    return column;
  };
  const wide = el => el.getBoundingClientRect().width > room(el) + 2;
  // a display formula: its typeset line against the room of the box that holds it, named by its TeX
  const tex = new Map();
  for (const item of (report.mathjax && MathJax.startup.document.math) || []) { tex.set(item.typesetRoot, item.math); }
  const formulas = Array.from(article.querySelectorAll('mjx-container[display="true"] > mjx-math'))
      .filter(el => el.getBoundingClientRect().width > room(el.parentElement) + 2);
  report.wide = Array.from(article.querySelectorAll("table, caption")).filter(wide)
      .concat(formulas)
      .map(el => `${el.tagName.toLowerCase()} ${Math.round(el.getBoundingClientRect().width)} px in ` +
                 `${Math.round(room(el))} px: ` + (tex.get(el.parentElement) ||
                 (el.querySelector("caption") || el).textContent).trim().replace(/\s+/g, " ").slice(0, 80));
  report.figures = article.querySelectorAll("img").length;
  report.tables = article.querySelectorAll("table").length;
  done(report);
})().catch(err => done({failure: String(err && err.stack || err)}));
"""


def network_events(driver) -> tuple[list[str], list[str]]:
    """Requests the page made that were not file:, data: or blob:, and requests that failed."""
    remote, failed, urls = [], [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params.get("requestId")] = url
            if not url.startswith(("file:", "data:", "blob:", "about:", "chrome:")):
                remote.append(url)
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{urls.get(params.get('requestId'), '?')} ({params.get('errorText')})")
    return remote, failed


def save_full_page(driver, shot: Path, width: int = 1280, part_height: int = 8000) -> list[Path]:
    """PNGs of the whole page, not just the window: ``shot`` and, for a page taller than ``part_height`` CSS
    pixels, ``<shot>-2.png``, ``-3`` ... (Chromium draws at most about 16,000 pixels in one capture): the
    window is made ``part_height`` tall and scrolled down by that much for each part."""
    height = int(driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"))
    metrics = {"width": width, "height": min(height, part_height), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    shot.parent.mkdir(parents=True, exist_ok=True)
    for old in shot.parent.glob(f"{shot.stem}-*.png"):
        old.unlink()
    saved = []
    try:
        for part, top in enumerate(range(0, height, part_height), start=1):
            driver.execute_script("window.scrollTo(0, arguments[0]);", top)
            png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
            path = shot if part == 1 else shot.with_name(f"{shot.stem}-{part}.png")
            path.write_bytes(base64.b64decode(png))
            saved.append(path)
    finally:
        driver.execute_script("window.scrollTo(0, 0);")
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return saved


def check_page(driver, path: Path, shot: Path | None = None) -> tuple[list[str], dict]:
    """Open one HTML file; return the problems found (empty when the page is fine) and the report."""
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get(path.resolve().as_uri())
    report = driver.execute_async_script(INSPECT)
    remote, failed = network_events(driver)
    if shot is not None:
        save_full_page(driver, shot)
    if "failure" in report:
        return [f"the page script failed: {report['failure']}"], report
    problems = []
    if report["mathElements"] and not report["mathjax"]:
        problems.append(f"{report['mathElements']} formulas but MathJax did not load")
    if report["untypeset"]:
        problems.append(f"{len(report['untypeset'])} formulas left untypeset, first: {report['untypeset'][0]!r}")
    if report["mathElements"] and not report["rendered"]:
        problems.append("no formula rendered")
    if report["rawTex"]:
        problems.append(f"raw TeX in the text: {report['rawTex'][0]!r}")
    if report["mathErrors"]:
        problems.append(f"MathJax errors: {report['mathErrors'][:3]}")
    if report["failedFonts"]:
        problems.append(f"fonts failed to load: {sorted(set(report['failedFonts']))}")
    if report["brokenImages"]:
        problems.append(f"images that did not load: {report['brokenImages']}")
    if report["errorOutputs"]:
        problems.append(f"cell error outputs: {report['errorOutputs'][:2]}")
    if report["traceback"]:
        problems.append(f"a traceback in the page: {report['traceback']!r}")
    if report["wide"]:
        problems.append(f"{len(report['wide'])} tables or captions wider than their column, first: {report['wide'][0]!r}")
    if remote:
        problems.append(f"requests to the network: {remote[:5]}")
    if failed:
        problems.append(f"resources that failed to load: {failed[:5]}")
    return problems, report


def html_for(page: str) -> Path:
    return HTML / f"{page}.html"


def require_build():
    if not (HTML / "index.html").exists():
        pytest.fail(f"{HTML / 'index.html'} is missing: build the book first (`make book`; `make test` does it)",
                    pytrace=False)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(browser, page):
    require_build()
    path = html_for(page)
    assert path.exists(), f"{page}: {path} was not built"
    problems, report = check_page(browser, path, SHOTS / f"{page.replace('/', '_')}.png")
    assert not problems, f"{page}: " + "; ".join(problems)
    figures, tables, formulas = EXPECTED.get(page, (0, 0, 0))
    assert report["figures"] >= figures, f"{page}: {report['figures']} figures, expected at least {figures}"
    assert report["tables"] >= tables, f"{page}: {report['tables']} tables, expected at least {tables}"
    assert report["rendered"] >= formulas, f"{page}: {report['rendered']} typeset formulas, expected at least {formulas}"


def test_every_toc_page_has_an_expectation():
    assert set(PAGES) == set(EXPECTED), f"_toc.yml pages {sorted(PAGES)} vs EXPECTED {sorted(EXPECTED)}"


def test_index_opens_the_first_page(browser):
    require_build()
    browser.get((HTML / "index.html").resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith(f"{PAGES[0]}.html"))


def test_mathjax_is_served_from_the_build():
    """Every page with math loads the MathJax copied into _build/html, none loads one from a CDN."""
    require_build()
    with_math = 0
    for page in PAGES:
        text = html_for(page).read_text()
        assert "cdn.jsdelivr" not in text and "mathjax@" not in text, f"{page} loads MathJax from a CDN"
        if 'class="math' in text:
            with_math += 1
            # Sphinx appends ?v=<checksum> when the file is already in the output (a rebuild)
            assert re.search(r'src="\.\./_static/mathjax/tex-chtml\.js(\?v=[0-9a-f]+)?"', text), \
                f"{page} has math but not the bundled MathJax"
    assert with_math, "no page has math"
    mathjax = HTML / "_static" / "mathjax"
    assert (mathjax / "tex-chtml.js").exists(), f"{mathjax / 'tex-chtml.js'} was not copied"
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")), "MathJax fonts were not copied"


BROKEN = r"""<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><article>
<p>Unrendered: <span class="math">\(a^2 + b^2\)</span> and $$\int_0^1 x\,dx$$</p>
<img src="no-such-figure.png" alt="missing">
<div class="cell_output"><div class="output traceback"><pre>Traceback (most recent call last):
ZeroDivisionError</pre></div></div>
<img src="https://example.org/remote.png" alt="remote">
<div class="output text_html" style="overflow-x: auto; width: 300px"><table style="width: 600px"><tr><td>wide</td></tr></table></div>
</article></body></html>
"""


def test_the_checks_flag_a_broken_page(browser, tmp_path):
    """Negative control: raw TeX, a missing image, a traceback, a remote request and a table scrolled sideways
    in its output area are all reported."""
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    problems, _ = check_page(browser, page)
    text = "; ".join(problems)
    for expected in ("MathJax did not load", "untypeset", "raw TeX", "no-such-figure.png",
                     "cell error outputs", "a traceback", "requests to the network", "wider than their column"):
        assert expected in text, f"the checks missed {expected!r}: {problems}"
