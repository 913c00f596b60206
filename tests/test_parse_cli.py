"""`scraperv4 parse`: a template tried on one page, fetched from a local site or read from a
file, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.extract import Template
from test_crawl_cli import run_cli


def test_parse_a_fetched_page_shows_items_links_next_page_and_unmatched_fields(
    tmp_path: Path,
) -> None:
    with DemoSite(categories=2, products_per_category=12, page_size=5) as site:
        listing = f"{site.url}category/{site.categories[0]}/"
        done = run_cli("parse", listing, "--template", str(TEMPLATE_PATH),
                       "--allow-private-networks")  # fmt: skip
        hits = dict(site.hits)
    # A listing page has no product: the item selector matches nothing (exit 1, said why).
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert f"template demo-products on {listing}" in out
    assert "items (0):" in out
    assert "links to follow (5):" in out and "/product/1" in out
    assert f"next page: {listing}?page=2" in out
    assert "the item selector matched nothing on this page" in out
    assert {p for p in hits if p != "/robots.txt"} == {f"/category/{site.categories[0]}/"}, (
        "one page fetched, no link followed"
    )


def test_parse_a_saved_file_names_the_fields_that_matched_nothing(tmp_path: Path) -> None:
    template = tmp_path / "cards.yaml"
    template.write_text(
        "id: cards\nitem: div.card\nfields:\n"
        "  - {name: title, selector: h2}\n"
        "  - {name: canonical, selector: 'link[rel=canonical]', extract: 'attr:href'}\n"
        "  - {name: sku, selector: .sku}\n"
    )
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><link rel="canonical" href="/c"></head><body>'
        '<div class="card"><h2>A</h2></div><div class="card"><h2>B</h2></div></body></html>'
    )
    done = run_cli("parse", "--file", str(page), "--base-url", "https://shop.example/list",
                   "--template", str(template))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "items (2):" in done.stdout
    assert '{"title": "A", "canonical": null, "sku": null}' in done.stdout
    assert (
        "canonical (link[rel=canonical]): matched in no item, but 1 element(s) outside the "
        "items: a field's selector is relative to each item"
    ) in done.stdout
    assert "sku (.sku): matched nothing on this page" in done.stdout

    as_json = run_cli("parse", "--file", str(page), "--template", str(template), "--json")
    report = json.loads(as_json.stdout)
    assert report["unmatched"] == ["canonical", "sku"]
    assert report["url"].startswith("file://")
    assert [f["items_matched"] for f in report["fields"]] == [2, 0, 0]


def test_parse_a_product_page_that_matches_everything_exits_0() -> None:
    with DemoSite(categories=1, products_per_category=2) as site:
        done = run_cli("parse", f"{site.url}product/2", "--template", str(TEMPLATE_PATH),
                       "--allow-private-networks")  # fmt: skip
        expected = site.expected()[1]
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.dumps(expected) in done.stdout
    assert "every field matched (1 item element(s))" in done.stdout


def test_parse_failures_are_one_line() -> None:
    refused = run_cli("parse", "http://127.0.0.1:9/", "--template", str(TEMPLATE_PATH))
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("scraperv4: fetching http://127.0.0.1:9/: ")
    assert "--allow-private-networks" in refused.stderr and "Traceback" not in refused.stderr
    nothing = run_cli("parse", "--template", str(TEMPLATE_PATH))
    assert nothing.returncode == 2 and "give the page" in nothing.stderr


def test_template_check_in_python() -> None:
    template = Template.from_file(TEMPLATE_PATH)
    check = template.check(
        '<article class="product"><h1 class="name">X</h1></article>', "https://a.example/p"
    )
    assert check.items == [
        {"name": "X", "price": None, "rating": None, "sku": None, "category": None, "image": None}
    ]
    assert check.unmatched == ["price", "rating", "sku", "category", "image"]
    assert "<table>" in check._repr_html_()
