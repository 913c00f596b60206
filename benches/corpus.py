"""A deterministic corpus of realistic listing pages (shared by the extraction benchmarks).

Each page is ~70-130 KB: 25-55 product cards (title, price, rating attribute, link, image,
a small table of specifications) inside navigation, inline scripts and styles, the way shop
listings look. ``page(n, omit_end_tags=True)`` writes the same page with the end tags HTML
lets authors omit left out (``</p>``, ``</li>``, ``</td>``, ``</th>``, ``</tr>``), as many
real sites do; the items are the same.
"""

from __future__ import annotations

import random
from typing import Any

TEMPLATE = {
    "id": "bench-product",
    "item": "div.product-card",
    "fields": [
        {"name": "title", "selector": "h3.title"},
        {"name": "price", "selector": "span.price"},
        {"name": "rating", "selector": "div.rating", "extract": "attr:data-rating"},
        {"name": "link", "selector": "a.product-link", "extract": "attr:href"},
        {"name": "image", "selector": "img.thumb", "extract": "attr:src"},
    ],
}

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def page(n: int, omit_end_tags: bool = False) -> str:
    """Listing page number ``n`` (deterministic), optionally without optional end tags."""
    rng = random.Random(n)
    end_p, end_li, end_cell, end_tr = (
        ("", "", "", "")
        if omit_end_tags
        else (
            "</p>",
            "</li>",
            "</td>",
            "</tr>",
        )
    )
    cards = []
    for i in range(rng.randint(25, 55)):
        name = " ".join(rng.choice(WORDS).title() for _ in range(rng.randint(2, 5)))
        desc = " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 140)))
        cards.append(
            f'<div class="product-card" data-id="{n}-{i}"><div class="inner">'
            f'<a class="product-link" href="/product/{n}/{i}?ref=list">'
            f'<img class="thumb" src="/img/{n}/{i}.jpg" alt="{name}" loading="lazy"></a>'
            f'<h3 class="title">{name}</h3><p class="desc">{desc}{end_p}'
            f'<table class="specs"><tr><th>Weight{end_cell}<td>{rng.randint(1, 9)} kg{end_cell}'
            f"{end_tr}<tr><th>Colour{end_cell}<td>{rng.choice(WORDS)}{end_cell}{end_tr}</table>"
            f'<div class="rating" data-rating="{rng.randint(10, 50) / 10}">'
            + "".join('<i class="star"></i>' for _ in range(5))
            + f'</div><span class="price">${rng.randint(100, 99999) / 100:.2f}</span>'
            '<button class="add">Add to cart</button></div></div>'
        )
    nav = "".join(f'<li><a href="/cat/{w}">{w.title()}</a>{end_li}' for w in WORDS)
    script = "var data = " + str([rng.random() for _ in range(300)]) + ";"
    style = "".join(f".c{i}{{margin:{i}px;padding:{i % 7}px}}" for i in range(900))
    body = "\n".join(cards)
    return (
        f"<!doctype html><html><head><title>Listing {n}</title><style>{style}</style>"
        f"<script>{script}</script></head><body><header><nav><ul>{nav}</ul></nav></header>"
        f'<main><div class="grid">{body}</div>'
        f'<a class="next" href="/list?page={n + 1}">Next</a></main>'
        f"<footer>{' '.join(WORDS * 20)}</footer><script>{script}</script></body></html>"
    )


def corpus(pages: int, omit_end_tags: bool = False) -> list[str]:
    """``pages`` listing pages."""
    return [page(n, omit_end_tags) for n in range(pages)]


def selectolax_items(html: str, _parser: list[Any] = []) -> int:  # noqa: B006 - import cache
    """The peer's version of the 5-field extraction (selectolax/lexbor); returns the count.

    selectolax is imported on first use (the test-suite imports this module without it).
    """
    if not _parser:
        from selectolax.lexbor import LexborHTMLParser

        _parser.append(LexborHTMLParser)
    count = 0
    for card in _parser[0](html).css("div.product-card"):
        item = {
            "title": card.css_first("h3.title").text(strip=True),
            "price": card.css_first("span.price").text(strip=True),
            "rating": card.css_first("div.rating").attributes.get("data-rating"),
            "link": card.css_first("a.product-link").attributes.get("href"),
            "image": card.css_first("img.thumb").attributes.get("src"),
        }
        count += bool(item)
    return count
