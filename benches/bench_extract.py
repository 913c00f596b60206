"""Extraction of 5 fields from listing pages: pages/s against selectolax, parsel and lxml.

All peers do the same work in the same run: for each card, title text, price text, the
rating attribute, the link and image URLs. Goals (issue #4): one thread >= 2x selectolax
(lexbor); all cores (GIL released) >= 3.5x selectolax.
"""

from __future__ import annotations

import sys
import time

from _common import report
from corpus import TEMPLATE, corpus, selectolax_items
from scraperv4.extract import Template

PAGES = 200
BASE = "https://shop.example/list"


def per_second(run, pages: int, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        items = run()
        best = min(best, time.perf_counter() - started)
    assert items > 0
    return pages / best


def main() -> int:
    from lxml import html as lxml_html
    from parsel import Selector

    pages = corpus(PAGES)
    size = sum(map(len, pages)) / len(pages) / 1024
    template = Template.from_dict(TEMPLATE)
    expected = sum(len(template.extract(p, BASE)) for p in pages)

    def ours_one_thread() -> int:
        return sum(len(template.extract(p, BASE)) for p in pages)

    def ours_all_cores() -> int:
        return sum(map(len, template.extract_many([(p, BASE) for p in pages])))

    def selectolax() -> int:
        return sum(selectolax_items(p) for p in pages)

    def parsel() -> int:
        count = 0
        for p in pages:
            for card in Selector(text=p).css("div.product-card"):
                item = {
                    "title": card.css("h3.title::text").get(),
                    "price": card.css("span.price::text").get(),
                    "rating": card.css("div.rating::attr(data-rating)").get(),
                    "link": card.css("a.product-link::attr(href)").get(),
                    "image": card.css("img.thumb::attr(src)").get(),
                }
                count += bool(item)
        return count

    def lxml() -> int:
        count = 0
        for p in pages:
            for card in lxml_html.fromstring(p).cssselect("div.product-card"):
                item = {
                    "title": card.cssselect("h3.title")[0].text_content(),
                    "price": card.cssselect("span.price")[0].text_content(),
                    "rating": card.cssselect("div.rating")[0].get("data-rating"),
                    "link": card.cssselect("a.product-link")[0].get("href"),
                    "image": card.cssselect("img.thumb")[0].get("src"),
                }
                count += bool(item)
        return count

    assert selectolax() == expected, "peers must find the same items"
    figures = {
        "pages": PAGES,
        "average page KB": size,
        "items": expected,
        "scraperv4 one thread (pages/s)": per_second(ours_one_thread, PAGES),
        "scraperv4 extract_many, all cores (pages/s)": per_second(ours_all_cores, PAGES),
        "selectolax lexbor (pages/s)": per_second(selectolax, PAGES),
        "parsel (pages/s)": per_second(parsel, PAGES, 1),
        "lxml cssselect (pages/s)": per_second(lxml, PAGES, 1),
    }
    peer = figures["selectolax lexbor (pages/s)"]
    met = report(
        "extract",
        figures,
        {
            "one thread vs selectolax": (figures["scraperv4 one thread (pages/s)"] / peer, 2.0),
            "all cores vs selectolax": (
                figures["scraperv4 extract_many, all cores (pages/s)"] / peer,
                3.5,
            ),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
