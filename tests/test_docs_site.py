"""The documentation site reads correctly with no network, in a real browser.

The site is built (or taken from ``$ANDI_DOCS_SITE``, which ``.ci/run`` sets to the site it has just built), served
on loopback, and every page is opened in headless Chromium whose resolver maps every host name away, so nothing but
the local server can be reached. A small script that the test server adds to each page waits for MathJax and
writes what it sees into the page, and Chromium's dump of the rendered DOM carries it back:

* every formula is typeset (no raw ``\\(`` or ``\\[`` left in the text, one MathJax container per formula);
* docstring examples (``>>>``) are highlighted code blocks, never quotes;
* tables, code blocks and display formulas end inside the content column at 1280 px, or scroll inside it;
* no page asks another host for anything (scripts, styles, fonts).

Skipped only where no Chromium can be found (``.ci/run`` installs Debian's ``chromium`` package).
"""

from __future__ import annotations

import functools
import html
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
REPORT_ID = "andi-render-check"

# Runs in the page after MathJax has typeset it; writes a JSON report into a <pre> the DOM dump carries back.
CHECK_SCRIPT = """
<script>
(function () {
  function report() {
    const content = document.querySelector('.md-content__inner') || document.body;
    const right = (document.querySelector('.md-content') || content).getBoundingClientRect().right + 1;
    const overflowing = [];
    for (const el of content.querySelectorAll('table, pre, mjx-container[display="true"]')) {
      // the element may be wider than the column if a scrolling (clipping) container inside the column holds it
      let clipped = false;
      for (let a = el; a && a !== content.parentElement; a = a.parentElement) {
        const o = getComputedStyle(a).overflowX;
        if ((o === 'auto' || o === 'scroll' || o === 'hidden') && a.getBoundingClientRect().right <= right) {
          clipped = true;
          break;
        }
      }
      const past = Math.round(el.getBoundingClientRect().right - right);
      if (!clipped && past > 0) {
        overflowing.push(el.tagName.toLowerCase() + ' (' + past + ' px): '
          + el.textContent.replace(/\\s+/g, ' ').trim().slice(0, 60));
      }
    }
    const math = content.querySelectorAll('.arithmatex');
    const typeset = [...math].filter((m) => m.querySelector('mjx-container')).length;
    const clone = content.cloneNode(true);
    clone.querySelectorAll('script, style, mjx-assistive-mml').forEach((n) => n.remove());
    const text = clone.textContent;
    const raw = (text.match(/\\\\[(\\[]/g) || []).length;
    const quoted = [...content.querySelectorAll('blockquote')].filter((b) => b.textContent.includes('>>>')).length;
    const examples = [...content.querySelectorAll('pre code')].filter((c) => c.textContent.includes('>>>')).length;
    const external = [...document.querySelectorAll('script[src], link[href], img[src]')]
      .map((n) => n.src || n.href).filter((u) => /^https?:/.test(u) && !u.startsWith(location.origin))
      .filter((u, i, all) => all.indexOf(u) === i);
    const out = document.createElement('pre');
    out.id = '__REPORT_ID__';
    out.textContent = JSON.stringify({
      mathjax: !!(window.MathJax && MathJax.startup && MathJax.startup.document),
      formulas: math.length, typeset, raw, quoted, examples, overflowing, external,
    });
    document.body.appendChild(out);
  }
  window.addEventListener('load', () => {
    const ready = window.MathJax && MathJax.startup && MathJax.startup.promise;
    (ready ? MathJax.startup.promise : Promise.resolve()).then(() => setTimeout(report, 300), report);
  });
})();
</script>
""".replace("__REPORT_ID__", REPORT_ID)


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ANDI_DOCS_SITE")
    if given:
        return Path(given)
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site and adds the check script to every HTML page."""

    def log_message(self, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_Handler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _render(browser: str, url: str, profile: Path) -> dict:
    """The check script's report for ``url``, from Chromium's dump of the rendered page."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--window-size=1280,900",
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(rf'<pre id="{REPORT_ID}">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"{url}: no report in the rendered page (exit {proc.returncode}): {proc.stderr[-1500:]}"
    return json.loads(html.unescape(match.group(1)))


def _pages(site: Path) -> list[str]:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    return [p for p in pages if p != "404.html" and not p.startswith(("javascripts/", "assets/"))]


def test_every_page_renders_offline(site: Path, served: str, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    pages = _pages(site)
    assert len(pages) > 20
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(
            zip(pages, pool.map(lambda p: _render(browser, f"{served}/{p}", tmp_path / p.replace("/", "_")), pages))
        )
    problems = []
    for page, r in reports.items():
        if r["formulas"] and not r["mathjax"]:
            problems.append(f"{page}: MathJax did not load")
        if r["typeset"] != r["formulas"] or r["raw"]:
            problems.append(f"{page}: {r['typeset']}/{r['formulas']} formulas typeset, {r['raw']} raw delimiters")
        if r["quoted"]:
            problems.append(f"{page}: {r['quoted']} docstring example(s) rendered as quotes")
        problems += [f"{page}: past the content's edge: {what}" for what in r["overflowing"]]
        problems += [f"{page}: asks another host for {url}" for url in r["external"]]
    assert not problems, "\n".join(problems)
    # the pages known to carry formulas and examples do (so the checks above checked something)
    assert reports["api/functional/index.html"]["formulas"] > 40
    assert reports["api/functional/index.html"]["examples"] >= 5
    assert reports["design/algorithm/index.html"]["typeset"] > 0
