"""A bundled demo shop served on 127.0.0.1, and the template that scrapes it.

The site is generated from a seed (the same pages every time): a home page linking to
categories, paginated category listings linking to product pages, and one product per
product page. :data:`TEMPLATE_PATH` extracts the products, follows category and product
links (``a.follow``, two levels deep) and the listings' next pages (``a.next``).

>>> with DemoSite(categories=2, products_per_category=3, page_size=2) as site:
...     site.expected_items, site.page_count
(6, 11)
"""

from __future__ import annotations

import html
import ipaddress
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = ["TEMPLATE_PATH", "DemoSite", "Product"]

#: The template that scrapes the demo site.
TEMPLATE_PATH = Path(__file__).with_name("template.json")

_ADJECTIVES = ["Red", "Blue", "Swift", "Quiet", "Bold", "Tiny", "Grand", "Soft", "Iron", "Lucky"]
_NOUNS = ["Lamp", "Chair", "Kettle", "Backpack", "Clock", "Mug", "Scarf", "Drone", "Desk", "Pen"]
_CATEGORIES = [
    "garden", "kitchen", "office", "outdoor", "toys", "audio", "books", "travel",
    "bath", "lighting", "sports", "crafts", "pets", "tools", "games", "music",
    "decor", "storage", "bikes", "camping", "baby", "health", "beauty", "cars",
]  # fmt: skip


class Product:
    """One generated product."""

    __slots__ = ("category", "id", "name", "price", "rating", "sku")

    def __init__(self, product_id: int, category: str, rng: random.Random) -> None:
        self.id = product_id
        self.category = category
        self.name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {product_id}"
        self.price = f"{rng.randint(100, 99999) / 100:.2f}"
        self.rating = f"{rng.randint(10, 50) / 10:.1f}"
        self.sku = f"SKU-{product_id:06d}"

    def as_item(self, base_url: str) -> dict[str, Any]:
        """The item the demo template extracts from this product's page."""
        return {
            "name": self.name,
            "price": self.price,
            "rating": self.rating,
            "sku": self.sku,
            "category": self.category,
            "image": f"{base_url}/img/{self.id}.jpg",
        }


class DemoSite:
    """Serves the demo shop on ``127.0.0.1`` (a free port) in a background thread.

    Args:
        categories: number of categories (at most 24).
        products_per_category: products in each category.
        page_size: products per listing page.
        latency: seconds each response waits before it is sent (a slow site).
        failing: product ids whose page always answers 500 (a broken page; 503 and 429 are
            what a site says to slow down, and slow the whole site for the fleet).
        seed: the generator's seed.
        host: the loopback address to serve on (``127.0.0.2``, ``127.0.0.3``, ... are other
            hosts to a crawler: other politeness keys).
    """

    def __init__(
        self,
        categories: int = 12,
        products_per_category: int = 25,
        page_size: int = 10,
        *,
        latency: float = 0.0,
        failing: Collection[int] = (),
        seed: int = 4,
        host: str = "127.0.0.1",
    ) -> None:
        try:
            loopback = ipaddress.IPv4Address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"host must be an IPv4 loopback address (127.x.y.z), not {host!r}")
        self.host = host
        if not 1 <= categories <= len(_CATEGORIES):
            raise ValueError(f"categories must be 1..{len(_CATEGORIES)}")
        if products_per_category < 1 or page_size < 1:
            raise ValueError("products_per_category and page_size must be at least 1")
        rng = random.Random(seed)  # noqa: S311 (made-up products, not secrets)
        self.page_size = page_size
        self.latency = latency
        self.failing = frozenset(failing)
        self.categories = _CATEGORIES[:categories]
        self.products: dict[int, Product] = {}
        self.by_category: dict[str, list[Product]] = {}
        next_id = 1
        for category in self.categories:
            listed = []
            for _ in range(products_per_category):
                product = Product(next_id, category, rng)
                self.products[next_id] = product
                listed.append(product)
                next_id += 1
            self.by_category[category] = listed
        #: Requests served per path (query included).
        self.hits: Counter[str] = Counter()
        #: Requests being served now, and the most at once since :meth:`reset_peak`.
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def listing_pages(self) -> int:
        """Listing pages per category."""
        per_category = len(next(iter(self.by_category.values())))
        return -(-per_category // self.page_size)

    @property
    def page_count(self) -> int:
        """Pages a full crawl fetches: home, every listing page, every product page."""
        return 1 + len(self.categories) * self.listing_pages + len(self.products)

    @property
    def expected_items(self) -> int:
        """Items a full crawl records (failing pages excluded)."""
        return len(self.products) - len(self.failing & self.products.keys())

    @property
    def url(self) -> str:
        """The home page (the crawl's seed)."""
        if self._server is None:
            raise RuntimeError("the demo site is not running")
        return f"http://{self.host}:{self._server.server_address[1]}/"

    def expected(self) -> list[dict[str, Any]]:
        """Every item a full crawl records, sorted by sku."""
        base = self.url.rstrip("/")
        return [
            p.as_item(base)
            for p in sorted(self.products.values(), key=lambda p: p.sku)
            if p.id not in self.failing
        ]

    def reset_peak(self) -> None:
        """Start measuring :attr:`peak_in_flight` again from the requests in flight now."""
        with self._lock:
            self.peak_in_flight = self.in_flight

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def start(self) -> DemoSite:
        """Start serving (idempotent)."""
        if self._server is None:
            site = self

            class Handler(_Handler):
                demo = site

            self._server = _Server((self.host, 0), Handler)
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="scraperv4-demo-site", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DemoSite:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def render(self, path: str) -> tuple[int, str]:
        """The status and HTML of ``path`` (query included)."""
        with self._lock:
            self.hits[path] += 1
        parts = urlsplit(path)
        segments = [s for s in parts.path.split("/") if s]
        if parts.path == "/robots.txt":
            return 200, "User-agent: *\nAllow: /\n"
        if not segments:
            return 200, self._home()
        if segments[0] == "category" and len(segments) == 2 and segments[1] in self.by_category:
            page = parse_qs(parts.query).get("page", ["1"])[0]
            if page.isdigit() and 1 <= int(page) <= self.listing_pages:
                return 200, self._listing(segments[1], int(page))
        if segments[0] == "product" and len(segments) == 2 and segments[1].isdigit():
            product = self.products.get(int(segments[1]))
            if product is not None:
                if product.id in self.failing:
                    return 500, _page("Internal Server Error", "<p>something broke</p>")
                return 200, self._product(product)
        return 404, _page("Not found", "<p>no such page</p>")

    def _home(self) -> str:
        links = "".join(
            f'<li><a class="follow" href="/category/{c}/">{c.title()}</a></li>'
            for c in self.categories
        )
        return _page("Demo shop", f"<nav><ul>{links}</ul></nav><p>Welcome.</p>")

    def _listing(self, category: str, page: int) -> str:
        products = self.by_category[category]
        start = (page - 1) * self.page_size
        cards = "".join(
            f'<div class="card"><h2><a class="follow" href="/product/{p.id}">'
            f'{html.escape(p.name)}</a></h2><span class="price">${p.price}</span></div>'
            for p in products[start : start + self.page_size]
        )
        pager = ""
        if page < self.listing_pages:
            pager = f'<a class="next" href="/category/{category}/?page={page + 1}">Next</a>'
        return _page(f"{category.title()} page {page}", f"{cards}<footer>{pager}</footer>")

    def _product(self, p: Product) -> str:
        body = (
            f'<article class="product"><h1 class="name">{html.escape(p.name)}</h1>'
            f'<img class="photo" src="/img/{p.id}.jpg" alt="">'
            f'<span class="price">${p.price}</span>'
            f'<div class="rating" data-rating="{p.rating}">{p.rating} stars</div>'
            f'<span class="sku">{p.sku}</span>'
            f'<p>In <a class="category-name follow" href="/category/{p.category}/">'
            f"{p.category}</a></p></article>"
        )
        return _page(p.name, body)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>body{{font-family:sans-serif}}</style></head><body>{body}</body></html>"
    )


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A crawler that hangs up early (a timeout, a stopped job) is not an error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    demo: DemoSite
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.demo._enter()
        try:
            self._respond()
        finally:
            self.demo._leave()

    def _respond(self) -> None:
        if self.demo.latency:
            time.sleep(self.demo.latency)
        status, text = self.demo.render(self.path)
        body = text.encode()
        self.send_response(status)
        content_type = "text/plain" if self.path == "/robots.txt" else "text/html; charset=utf-8"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the crawler's progress is the interesting output."""
