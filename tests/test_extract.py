"""Templates and extraction: every feature, broken input, charsets, template mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scraperv4.exceptions import TemplateError
from scraperv4.extract import TEXT_BLOCK_ELEMENTS, TEXT_SKIPPED_ELEMENTS, Template, TemplateRegistry
from scraperv4.fetch import Fetcher
from support.http_server import Server
from support.ticker import Ticker

LISTING = """<!doctype html><html><head><title>Shop</title>
<style>.card{color:red}</style><script>var cards = "<div class='card'>";</script></head>
<body><nav><a href="/">home</a><a href="/cat/shoes">shoes</a></nav>
{cards}
<a class="next" href="/list?page={next}">next</a>
<a href="https://elsewhere.org/">partner</a>
</body></html>"""

CARD = """<div class="card" data-sku="{i}">
  <h2 class="title">  Product   {i} </h2>
  <span class="price">${price}</span>
  <span class="rating" data-stars="{stars}">*</span>
  <a class="link" href="/p/{i}?ref=list#reviews">view</a>
  <img src="//cdn.shop.example/img/{i}.jpg">
  <ul><li class="tag">t{i}a</li><li class="tag">t{i}b</li></ul>
</div>"""

TEMPLATE = {
    "id": "product-template",
    "item": "div.card",
    "fields": [
        {"name": "title", "selector": "h2.title", "required": True},
        {"name": "price", "selector": ".price", "regex": r"\$([0-9.]+)"},
        {"name": "rating", "selector": ".rating", "extract": "attr:data-stars"},
        {"name": "link", "selector": "a.link", "extract": "attr:href"},
        {"name": "image", "selector": "img", "extract": "attr:src"},
        {"name": "tags", "selector": "li.tag", "all": True},
        {"name": "badge", "selector": ".badge", "default": "none"},
        {"name": "html", "selector": ".price", "extract": "html"},
    ],
    "links": {"selector": "a", "scope": "same_domain", "max_depth": 2},
    "pagination": {"next": "a.next", "max_pages": 10},
}


def listing(count: int, next_page: int = 2) -> str:
    cards = "\n".join(CARD.format(i=i, price=f"{i}.99", stars=i % 5 + 1) for i in range(count))
    return LISTING.replace("{cards}", cards).replace("{next}", str(next_page))


def test_every_field_kind() -> None:
    items = Template.from_dict(TEMPLATE).extract(listing(3), "https://www.shop.example/list")
    assert len(items) == 3
    assert items[1] == {
        "title": "Product 1",
        "price": "1.99",
        "rating": "2",
        "link": "https://www.shop.example/p/1?ref=list",
        "image": "https://cdn.shop.example/img/1.jpg",
        "tags": ["t1a", "t1b"],
        "badge": "none",
        "html": '<span class="price">$1.99</span>',
    }


def test_one_item_per_page_without_an_item_selector() -> None:
    template = Template.from_dict(
        {"id": "page", "fields": [{"name": "title", "selector": "title"}]}
    )
    assert template.extract(listing(2), "https://x.example/") == [{"title": "Shop"}]


def test_links_pagination_and_scope() -> None:
    template = Template.from_dict(TEMPLATE)
    links = template.links(listing(2), "https://www.shop.example/list?page=1")
    assert "https://elsewhere.org/" not in links
    assert "https://www.shop.example/cat/shoes" in links
    assert links.count("https://www.shop.example/p/0?ref=list") == 1
    assert template.next_page(listing(2, 7), "https://www.shop.example/list?page=6") == (
        "https://www.shop.example/list?page=7"
    )
    assert template.next_page("<p>last page</p>", "https://www.shop.example/") is None


def test_broken_html_still_extracts_what_is_there() -> None:
    template = Template.from_dict(TEMPLATE)
    broken = listing(4)[: len(listing(4)) * 2 // 3]  # truncated mid-card
    items = template.extract(broken, "https://www.shop.example/")
    assert 2 <= len(items) <= 4
    assert all(item["title"].startswith("Product") for item in items)
    for garbage in ["", "<<<>>>", "\x00\x01\x02" * 100, "<div class=card><h2>x" * 1000]:
        assert isinstance(template.extract(garbage, "not a url"), list)


def test_a_non_utf8_page_extracts_correctly_after_fetching() -> None:
    template = Template.from_dict({"id": "t", "fields": [{"name": "body", "selector": "body"}]})
    with Server() as server:
        fetcher = Fetcher(allow_private_networks=True, respect_robots=False)
        page = fetcher.fetch(f"{server.base}/meta-1251")
    assert template.extract(page.text, page.final_url) == [{"body": "Привет"}]


@pytest.mark.parametrize(
    ("change", "message", "field"),
    [
        ({"fields": [{"name": "a", "selector": "div[[["}]}, "invalid CSS selector", "a"),
        ({"item": ":::"}, "invalid CSS selector", None),
        ({"colour": "red"}, "unknown field", None),
        ({"fields": [{"name": "a", "selector": "p", "colour": 1}]}, "unknown field", None),
        (
            {"fields": [{"name": "a", "selector": "p"}, {"name": "a", "selector": "h1"}]},
            "duplicate field name",
            "a",
        ),
        ({"fields": [{"selector": "p"}]}, "has no name", None),
        ({"fields": [{"name": "a", "selector": "p", "regex": "(unclosed"}]}, "invalid regex", "a"),
        ({"fields": [{"name": "a", "selector": "p", "extract": "attr:"}]}, "unknown extract", "a"),
        ({"links": {"selector": "a", "scope": "everywhere"}}, "links.scope", None),
    ],
)
def test_template_mistakes_name_template_and_field(
    change: dict[str, object], message: str, field: str | None
) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        Template.from_dict({**TEMPLATE, **change})
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("template product-template") or "<dict>" in str(
        caught.value
    )
    assert caught.value.field == field


def test_registry_loads_json_and_yaml_by_id(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(TEMPLATE))
    (tmp_path / "b.yaml").write_text("id: titles\nfields:\n  - name: title\n    selector: title\n")
    (tmp_path / "notes.txt").write_text("ignored")
    registry = TemplateRegistry(tmp_path)
    assert registry.ids() == ["product-template", "titles"]
    assert registry["titles"].extract(listing(1), "https://x.example/") == [{"title": "Shop"}]
    with pytest.raises(TemplateError, match=r"known: product-template, titles\)"):
        registry.get("missing")
    (tmp_path / "c.json").write_text(json.dumps({**TEMPLATE}))
    with pytest.raises(TemplateError, match="duplicate template id"):
        TemplateRegistry(tmp_path)


def test_extract_many_matches_extract_and_releases_the_gil() -> None:
    template = Template.from_dict(TEMPLATE)
    pages = [(listing(40, n + 2), f"https://www.shop.example/list?page={n}") for n in range(60)]
    with Ticker() as ticker:
        started = time.monotonic()
        many = template.extract_many(pages)
        elapsed = time.monotonic() - started
    ticks = ticker.ticks
    assert many == [template.extract(html, url) for html, url in pages]
    assert sum(map(len, many)) == 40 * 60
    if elapsed > 0.05:  # only meaningful when the call took long enough to observe
        assert ticks > 5, f"the other thread ticked {ticks} times in {elapsed:.2f}s"


def test_extract_many_keeps_the_input_order_with_non_ascii_and_empty_input() -> None:
    template = Template.from_dict(TEMPLATE)
    assert template.extract_many([]) == []
    # Non-ASCII pages (their UTF-8 text is made once, then read in place), of varied sizes
    # so they finish out of order.
    pages = [
        (listing(1 + (n * 7) % 30, n + 2).replace("Product", "Prödüct €"), f"https://é.example/{n}")
        for n in range(40)
    ]
    many = template.extract_many(iter(pages))
    assert many == [template.extract(html, url) for html, url in pages]
    assert [len(items) for items in many] == [1 + (n * 7) % 30 for n in range(40)]


FAST = {
    **TEMPLATE,
    "fields": [f for f in TEMPLATE["fields"] if f.get("extract") != "html"],  # type: ignore[attr-defined]
}

TRICKY_CARDS = [
    '<div class="card"><h2 class="title">Fish &amp; Chips &#8364;5</h2>'
    '<span class="price">$3.50 &nbsp;</span></div>',
    '<div class="card"><h2 class="title">Red<b>Bold</b> <i>and</i>\n\n  more</h2></div>',
    '<div class="card"><h2 class="title">Unclosed <span>inner</div>',
    '<div class="card"><div class="card"><h2 class="title">Nested</h2></div>'
    '<h2 class="title">Outer</h2></div>',
    '<div class="card"><a class="link" href="/a?x=1&amp;y=2">l</a><h2 class="title">A</h2></div>',
    '<div class="card"><span class="price">no dollar</span><h2 class="title">B</h2></div>',
    '<div class="card"><li class="tag">one</li><li class="tag"> </li><h2 class="title">C</h2>',
]


def parity_pages() -> list[str]:
    pages = [listing(n) for n in (0, 1, 5, 30)]
    pages += [f"<html><body>{card}</body></html>" for card in TRICKY_CARDS]
    pages.append("".join(TRICKY_CARDS))
    pages.append(listing(12)[:5000])  # truncated mid-card
    return pages


def test_fast_and_dom_engines_agree_on_the_corpus() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
    from corpus import TEMPLATE as BENCH_TEMPLATE
    from corpus import corpus

    for spec, pages in [(FAST, parity_pages()), (BENCH_TEMPLATE, corpus(8))]:
        template = Template.from_dict(spec)
        assert template.engine == "fast"
        for page in pages:
            base = "https://www.shop.example/list"
            assert template._inner._analyse(page, base) == template._inner._analyse_dom(
                page, base
            ), page[:200]


def test_only_templates_with_html_fields_use_the_dom_for_every_page() -> None:
    assert Template.from_dict(TEMPLATE).engine == "dom", "an html field needs the DOM"
    page_level = {"id": "p", "fields": [{"name": "t", "selector": "title"}]}
    assert Template.from_dict(page_level).engine == "fast"
    structural = {**FAST, "fields": [{"name": "t", "selector": "h2, h3:last-child ~ p"}]}
    assert Template.from_dict(structural).engine == "fast"


def test_omitted_end_tags_give_what_a_browser_gives() -> None:
    """The examples of issue #18: implied end tags, tables, nested links."""
    products = Template.from_dict(
        {
            "id": "x",
            "item": "li.product",
            "fields": [{"name": "name", "selector": ".name"}, {"name": "desc", "selector": "p"}],
        }
    )
    html = "<ul>" + "".join(
        f"<li class=product><span class=name>N{i}</span><p>desc {i}" for i in range(4)
    )
    assert products.extract(html + "</ul>", "http://e/") == [
        {"name": f"N{i}", "desc": f"desc {i}"} for i in range(4)
    ]
    rows = Template.from_dict(
        {"id": "rows", "item": "tr", "fields": [{"name": "cell", "selector": "td"}]}
    )
    table = "<table><tr><td>1<td>2<tr><td>3<td>4</table>"
    assert rows.extract(table, "http://e/") == [{"cell": "1"}, {"cell": "3"}]
    assert Template.from_dict(
        {"id": "t", "item": "tbody > tr", "fields": [{"name": "c", "selector": "td + td"}]}
    ).extract(table, "http://e/") == [{"c": "2"}, {"c": "4"}], "the implied tbody exists"
    links = Template.from_dict(
        {"id": "l", "item": ".card", "fields": [{"name": "title", "selector": "a.t"}]}
    )
    nested = "<div class=card><a class=t href=/p>Title <a href=/b>Brand</a></a></div>"
    assert links.extract(nested, "http://e/") == [{"title": "Title"}]


def test_template_contents_are_not_part_of_the_page() -> None:
    template = Template.from_dict(
        {"id": "t", "item": "p.t", "fields": [{"name": "text", "selector": "b"}]}
    )
    page = "<div><template><p class=t><b>hidden</b></p></template><p class=t><b>shown</b></div>"
    assert template.extract(page, "http://e/") == [{"text": "shown"}]
    whole = Template.from_dict({"id": "w", "fields": [{"name": "div", "selector": "div"}]})
    assert whole.extract(page, "http://e/") == [{"div": "shown"}]


def test_the_text_rule() -> None:
    template = Template.from_dict(
        {
            "id": "text",
            "item": "div.t",
            "fields": [
                {"name": "all", "selector": "section"},
                {"name": "inline", "selector": ".price"},
                {"name": "json_ld", "selector": "script[type='application/ld+json']"},
                {"name": "cells", "selector": "tr"},
                {"name": "options", "selector": "select"},
            ],
        }
    )
    page = (
        "<div class=t><section><p>Line one.</p><p>Line two.</p>first<br>second"
        "<script>var hidden = 1;</script><style>p {}</style><noscript>no js</noscript>"
        "<template>tpl</template><ul><li>a<li>b</ul></section>"
        "<span class=price><b>$</b>19<i>.99</i>&nbsp;</span>"
        '<script type="application/ld+json">{"@type": "Product"}</script>'
        "<table><tr><td>c1<td>c2</table><select><option>S<option>M</select></div>"
    )
    assert template.extract(page, "http://e/") == [
        {
            "all": "Line one. Line two. first second a b",
            "inline": "$19.99",
            "json_ld": '{"@type": "Product"}',
            "cells": "c1 c2",
            "options": "S M",
        }
    ]
    assert {"p", "li", "td", "br"} <= TEXT_BLOCK_ELEMENTS
    assert {"span", "b", "a"}.isdisjoint(TEXT_BLOCK_ELEMENTS)
    assert {"script", "style", "template", "noscript"} == TEXT_SKIPPED_ELEMENTS


def test_urls_resolve_against_the_documents_base() -> None:
    template = Template.from_dict(
        {
            "id": "base",
            "fields": [
                {"name": "link", "selector": "a.l", "extract": "attr:href"},
                {"name": "image", "selector": "img", "extract": "attr:src"},
            ],
            "links": {"selector": "a.l", "scope": "any"},
            "pagination": {"next": "a.next"},
        }
    )
    page = (
        "<head><base target=_top><base href='https://cdn.example/dir/'>"
        "<base href='/ignored/'></head><body><a class=l href='page.html'>p</a>"
        "<img src='img/1.png'><a class=next href='?page=2'>next</a>"
    )
    url = "https://shop.example/list/index.html"
    assert template.extract(page, url) == [
        {"link": "https://cdn.example/dir/page.html", "image": "https://cdn.example/dir/img/1.png"}
    ]
    assert template.links(page, url) == ["https://cdn.example/dir/page.html"]
    assert template.next_page(page, url) == "https://cdn.example/dir/?page=2"
    items, links, next_page = template._inner._analyse(page, url)
    assert (items, links, next_page) == template._inner._analyse_dom(page, url)
    # A base the page's own scope rules still apply to: `same_domain` is the page's domain.
    scoped = Template.from_dict({**FAST, "links": {"selector": "a", "scope": "same_domain"}})
    assert scoped.links(page, url) == []


def test_engine_counters_and_fallbacks() -> None:
    from scraperv4.extract import engine_stats

    template = Template.from_dict(FAST)
    before = engine_stats()
    template.extract(listing(2), "https://x.example/")
    template.extract("<table><tr><td>a</td></tr>stray<tr></table>", "https://x.example/")
    Template.from_dict(TEMPLATE).extract(listing(1), "https://x.example/")
    after = engine_stats()
    assert after["fast"] == before["fast"] + 1
    assert after["fallbacks"]["foster_parenting"] == before["fallbacks"]["foster_parenting"] + 1
    assert after["dom_by_template"] == before["dom_by_template"] + 1


def test_random_bytes_never_break_either_engine() -> None:
    """A bounded, seeded stand-in for fuzzing: mutated pages through both engines."""
    import random

    rng = random.Random(1234)
    template = Template.from_dict(FAST)
    seeds = parity_pages()
    for _ in range(300):
        page = bytearray(rng.choice(seeds).encode())
        for _ in range(rng.randint(1, 40)):
            at = rng.randrange(len(page)) if page else 0
            action = rng.random()
            if action < 0.4 and page:
                page[at] = rng.randrange(256)
            elif action < 0.7:
                page[at:at] = rng.choice(
                    [b"<", b">", b"</div>", b"<div class=card>", b"&", b"\x00"]
                )
            elif page:
                del page[at : at + rng.randint(1, 50)]
        text = page.decode("utf-8", errors="replace")
        assert isinstance(template.extract(text, "https://x.example/"), list)
        assert isinstance(template._inner._extract_dom(text, "https://x.example/"), list)
        assert isinstance(template.links(text, "https://x.example/"), list)


# A page that breaks a cap at once, next to pages that take html5ever's foster-parenting path
# (it logs a warning through Python's logging, which needs the GIL) while they parse.
_HANG_SCRIPT = """
import scraperv4
from scraperv4.exceptions import ExtractionLimitError
from scraperv4.extract import Template
scraperv4.set_log_level("debug")
template = Template.from_dict({"id": "t", "item": "p", "fields": [{"name": "h", "selector": "h2"}]})
deep = "<div class=p>" * 50_000 + "<h2>x"
foster = "<table><tr><td>a</td></tr>" + "stray<tr><td>b</td></tr>" * 20_000 + "</table>"
try:
    template.extract_many([(deep, "https://x.example/")] + [(foster, "https://y.example/")] * 8)
except ExtractionLimitError:
    print("limit", flush=True)
"""


def test_a_failing_page_next_to_pages_still_parsing_does_not_hang() -> None:
    """extract_many waits for the pages still parsing without the GIL after an error (it
    held the GIL while one of them waited for it to log: the process hung for good)."""
    done = subprocess.run(
        [sys.executable, "-c", _HANG_SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip() == "limit", done.stderr[-2000:]
