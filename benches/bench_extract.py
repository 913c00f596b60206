"""Extraction of 5 fields from listing pages: pages/s against selectolax, parsel and lxml.

All peers do the same work in the same run: for each card, title text, price text, the
rating attribute, the link and image URLs. Two corpora: the pages as written with every end
tag, and the same pages with the optional end tags omitted (``</p>``, ``</li>``, ``</td>``,
``</th>``, ``</tr>``) — the fast engine must give the browser's tree on both, and it reports
how many pages it handed to html5ever (the fallback rate).

Ours and selectolax run interleaved (ours, all cores, selectolax, ours, ...) so that drifts in
the machine's speed hit all alike; the figures are medians with the range over the rounds,
and the ratio is taken within each round. CPU time (all threads) is recorded next to wall
time: when other work keeps the cores busy, the wall-time scaling of ``extract_many`` says
little, and "cores busy" (its CPU seconds per wall second) says how many it got. Goals
(issues #4, #18, #20): one thread >= 2x selectolax (lexbor) on both corpora; all cores (GIL
released) >= 3.5x selectolax and >= 1.8x our one-thread rate on 2 cores.

    .venv/bin/python benches/bench_extract.py
"""

from __future__ import annotations

import sys

from _common import report
from _interleave import load, measure, median, ratios, spread
from corpus import TEMPLATE, corpus, selectolax_items
from scraperv4.extract import Template, engine_stats

PAGES = 200
ROUNDS = 7
BASE = "https://shop.example/list"


def compare(label: str, pages: list[str], template: Template) -> tuple[dict[str, object], dict]:
    expected = sum(len(template.extract(p, BASE)) for p in pages)
    assert sum(selectolax_items(p) for p in pages) == expected, "peers must find the same items"
    assert sum(map(len, template.extract_many([(p, BASE) for p in pages]))) == expected
    before = engine_stats()
    timings = measure(
        {
            "one": lambda: sum(len(template.extract(p, BASE)) for p in pages),
            "all": lambda: sum(map(len, template.extract_many([(p, BASE) for p in pages]))),
            "selectolax": lambda: sum(selectolax_items(p) for p in pages),
        },
        ROUNDS,
    )
    after = engine_stats()
    fallbacks = sum(after["fallbacks"].values()) - sum(before["fallbacks"].values())
    parsed = after["fast"] - before["fast"] + fallbacks
    wall = {name: t["wall"] for name, t in timings.items()}
    cpu = {name: t["cpu"] for name, t in timings.items()}
    per_second = {name: [PAGES / t for t in times] for name, times in wall.items()}
    one = ratios(wall["selectolax"], wall["one"])
    every = ratios(wall["selectolax"], wall["all"])
    scaling = ratios(wall["one"], wall["all"])
    # CPU seconds per wall second of extract_many: the cores it kept busy (2.0 = both).
    busy = ratios(cpu["all"], wall["all"])
    figures: dict[str, object] = {
        f"{label}: items": expected,
        f"{label}: scraperv4 one thread, pages/s": spread(per_second["one"], 1),
        f"{label}: scraperv4 extract_many all cores, pages/s": spread(per_second["all"], 1),
        f"{label}: selectolax lexbor, pages/s": spread(per_second["selectolax"], 1),
        f"{label}: one thread / selectolax": spread(one, 2),
        f"{label}: all cores / selectolax": spread(every, 2),
        f"{label}: all cores / one thread (wall)": spread(scaling, 2),
        f"{label}: CPU s one thread / all cores": (f"{spread(cpu['one'])} / {spread(cpu['all'])}"),
        f"{label}: extract_many cores busy (CPU s / wall s)": spread(busy, 2),
        f"{label}: pages handed to html5ever": f"{fallbacks} of {parsed}",
    }
    return figures, {"one": median(one), "all": median(every), "scaling": median(scaling)}


def main() -> int:
    from lxml import html as lxml_html
    from parsel import Selector

    template = Template.from_dict(TEMPLATE)
    closed = corpus(PAGES)
    omitted = corpus(PAGES, omit_end_tags=True)
    size = sum(map(len, closed)) / len(closed) / 1024
    figures: dict[str, object] = {
        "pages per corpus": PAGES,
        "average page KB": size,
        "rounds (interleaved one, all, selectolax)": ROUNDS,
        "load average before": load(),
    }
    closed_figures, closed_ratio = compare("end tags written", closed, template)
    omitted_figures, omitted_ratio = compare("end tags omitted", omitted, template)
    figures["load average after"] = load()
    figures.update(closed_figures)
    figures.update(omitted_figures)

    def parsel() -> int:
        count = 0
        for p in closed:
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
        for p in closed:
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

    reference = measure({"parsel": parsel, "lxml": lxml}, 1)
    figures["parsel (pages/s, once)"] = PAGES / reference["parsel"]["wall"][0]
    figures["lxml cssselect (pages/s, once)"] = PAGES / reference["lxml"]["wall"][0]
    met = report(
        "extract",
        figures,
        {
            "one thread vs selectolax (end tags written)": (closed_ratio["one"], 2.0),
            "one thread vs selectolax (end tags omitted)": (omitted_ratio["one"], 2.0),
            "all cores vs selectolax (end tags written)": (closed_ratio["all"], 3.5),
            "all cores vs one thread (end tags written)": (closed_ratio["scaling"], 1.8),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
