"""A browser is the oracle of extraction: Debian's Chromium parses every document of
``tests/extract_corpus/`` and its DOM must be the tree both engines build (same elements,
attributes and text), and ``querySelectorAll`` plus the text rule of ``docs/templates.md``,
run in the page, must give the items the template gives.

The pages are served to the browser by Playwright's request routing (no socket), with a
Content-Security-Policy that stops scripts from running while scripting stays enabled for the
parser (as for html5ever: ``<noscript>`` content is raw text).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from scraperv4 import _core
from scraperv4.extract import TEXT_BLOCK_ELEMENTS, TEXT_SKIPPED_ELEMENTS, Template

CHROMIUM = "/usr/bin/chromium"
CORPUS = Path(__file__).resolve().parent / "extract_corpus"
# Loopback and a closed port: nothing leaves the machine even if routing were bypassed.
ORIGIN = "http://127.0.0.1:9"

# Every element with the texts of all its descendants, and the links below it.
EVERY = Template.from_dict(
    {
        "id": "every",
        "item": "*",
        "fields": [
            {"name": "texts", "selector": "*", "all": True},
            {"name": "hrefs", "selector": "[href]", "extract": "attr:href", "all": True},
        ],
    }
)

# Documents where html5ever (the DOM engine, through scraper) builds another tree than the
# HTML standard and browsers: a MathML annotation-xml with encoding="text/html" is an HTML
# integration point, which scraper's tree sink does not report to html5ever. The first newline
# token after <pre>, <listing> or <textarea> is dropped by the standard (and Chromium) also when
# it is a character reference (&#10;) or follows an ignored </>; html5ever keeps it then.
KNOWN_HTML5EVER_DIFFERENCES = {"math_annotation", "pre_entity_newline"}

# The canonical dump of a DOM (the format of `scraperv4.extract.tree_dumps`) and the items of
# the EVERY template, computed in the page.
ORACLE_JS = """([blocks, skipped]) => {
  const NS = {"http://www.w3.org/1999/xhtml": "Html", "http://www.w3.org/2000/svg": "Svg",
              "http://www.w3.org/1998/Math/MathML": "MathMl"};
  const ATTR_NS = {"http://www.w3.org/1999/xlink": "Xlink",
                   "http://www.w3.org/XML/1998/namespace": "Xml",
                   "http://www.w3.org/2000/xmlns/": "Xmlns"};
  const esc = s => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll('"', "&quot;");
  const dump = node => {
    if (node.nodeType === Node.TEXT_NODE) return esc(node.data);
    if (node.nodeType !== Node.ELEMENT_NODE) return "";
    const name = NS[node.namespaceURI] + ":" + node.localName;
    const attrs = Array.from(node.attributes).map(a =>
      " " + (ATTR_NS[a.namespaceURI] || "None") + ":" + a.localName + '="' + esc(a.value) + '"');
    attrs.sort();
    return "<" + name + attrs.join("") + ">" + Array.from(node.childNodes).map(dump).join("")
      + "</" + name + ">";
  };
  const isHtml = e => e.namespaceURI === "http://www.w3.org/1999/xhtml";
  const text = element => {
    let out = "";
    const walk = node => {
      for (const child of node.childNodes) {
        if (child.nodeType === Node.TEXT_NODE) out += child.data;
        if (child.nodeType !== Node.ELEMENT_NODE || skipped.includes(child.localName)) continue;
        const block = isHtml(child) && blocks.includes(child.localName);
        if (block) out += " ";
        walk(child);
        if (block) out += " ";
      }
    };
    walk(element);
    // Unicode White_Space, as Rust's str::split_whitespace.
    const space =
      /[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+/;
    return out.split(space).filter(w => w).join(" ");
  };
  const link = value => {
    let url;
    try { url = new URL(value.trim(), document.baseURI); } catch (e) { return null; }
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    url.hash = "";
    return url.href;
  };
  const items = Array.from(document.querySelectorAll("*")).map(element => {
    const texts = Array.from(element.querySelectorAll("*")).map(text);
    const hrefs = Array.from(element.querySelectorAll("[href]"))
      .map(e => link(e.getAttribute("href"))).filter(h => h !== null);
    return {texts: texts.length ? texts : null, hrefs: hrefs.length ? hrefs : null};
  });
  return {dump: dump(document.documentElement), items: items};
}"""


def documents() -> list[Path]:
    return sorted(CORPUS.glob("*.html"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        "chromium is missing: install Debian's package (apt-get install chromium); .ci/run does it"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            launched.close()


def browser_view(page: Page, html: bytes, url: str) -> dict[str, Any]:
    def serve(route: Route) -> None:
        route.fulfill(
            status=200,
            body=html,
            headers={
                "Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": "script-src 'none'",
            },
        )

    page.route(url, serve)
    try:
        page.goto(url, wait_until="load", timeout=15_000)
        view: dict[str, Any] = page.evaluate(
            ORACLE_JS, [sorted(TEXT_BLOCK_ELEMENTS), sorted(TEXT_SKIPPED_ELEMENTS)]
        )
    finally:
        page.unroute(url)
    return view


def test_the_browser_builds_the_trees_and_finds_the_items_both_engines_do(
    browser: Browser,
) -> None:
    page = browser.new_page()
    checked = 0
    for path in documents():
        raw = path.read_bytes()
        html = raw.decode("utf-8")
        url = f"{ORIGIN}/corpus/{path.stem}.html"
        view = browser_view(page, raw, url)
        fast, _fallback, dom = _core._tree_dumps(html)
        if fast is not None:
            assert fast == dom, f"{path.name}: the engines' trees differ"
        items = [{"texts": i["texts"], "hrefs": i["hrefs"]} for i in EVERY.extract(html, url)]
        assert items == [
            {"texts": i["texts"], "hrefs": i["hrefs"]} for i in EVERY._inner._extract_dom(html, url)
        ], path.name
        if path.stem in KNOWN_HTML5EVER_DIFFERENCES:
            assert view["dump"] != dom, f"{path.name} now agrees: drop it from the known list"
            continue
        assert view["dump"] == dom, f"{path.name}: html5ever and Chromium build other trees"
        assert items == view["items"], (
            f"{path.name}: the browser finds other items\n"
            + (json.dumps({"ours": items, "browser": view["items"]}, ensure_ascii=False)[:3000])
        )
        checked += 1
    assert checked >= 60
