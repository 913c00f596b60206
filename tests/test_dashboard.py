"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright, against a
live coordinator and redis-server. Saves a screenshot under tests/artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from scraperv4.coordinator import Coordinator
from scraperv4.queue import JobQueue

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOKEN = "dashboard-token-0123456789"


def test_dashboard_shows_live_numbers_and_its_buttons_work(redis_url: str) -> None:
    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        "chromium is missing: install Debian's package (apt-get install chromium); .ci/run does it"
    )
    queue = JobQueue(redis_url)
    queue.register_worker("worker-a")
    queue.submit({"id": "broken", "target_url": "http://127.0.0.1:9/x", "max_retries": 0})
    (claimed,) = queue.claim("worker-a", 1)
    queue.fail(claimed, "HTTP 500 from the site", retryable=False)
    # Failures as workers store them: one readable line each, the kind in front.
    refused = (
        "connect: fetching http://127.0.0.1:9/p{}: connection refused (nothing listens on "
        "127.0.0.1:9); check that the site is up and the URL's host and port"
    )
    for i in range(3):
        queue.submit({"id": f"refused-{i}", "target_url": f"http://127.0.0.1:9/p{i}",
                      "max_retries": 0})  # fmt: skip
        (job,) = queue.claim("worker-a", 1)
        queue.fail(job, refused.format(i), retryable=False)
    queue.submit({"id": "gone", "target_url": "http://127.0.0.1:9/gone", "max_retries": 0})
    (job,) = queue.claim("worker-a", 1)
    queue.fail(job, "http_status: fetching http://127.0.0.1:9/gone: the server answered HTTP "
               "404 Not Found; the page does not exist: check the URL or the template's links",
               retryable=False)  # fmt: skip
    with (
        Coordinator(queue, "127.0.0.1:0", token=TOKEN, stats_interval=0.2) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda dialog: dialog.accept(TOKEN))  # the token prompt
            console_errors: list[str] = []
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.goto(f"http://{server.address}/", timeout=15_000)
            expect(page.locator("#connection")).to_contain_text("live", timeout=10_000)
            pending = page.locator('[data-count="pending"]')
            expect(pending).to_have_text("0", timeout=10_000)
            expect(page.locator('[data-count="failed"]')).to_have_text("5")
            expect(page.locator("#failures")).to_contain_text("HTTP 500 from the site")
            # Grouped by kind, most frequent first, each with a readable example.
            kinds = page.locator("#failure-kinds tr")
            expect(kinds).to_have_count(3)
            expect(kinds.nth(0)).to_contain_text("connect")
            expect(kinds.nth(0).locator("td.count")).to_have_text("3")
            expect(kinds.nth(0)).to_contain_text("connection refused (nothing listens on")
            expect(
                page.locator('#failure-kinds tr[data-kind="http_status"] td.count')
            ).to_have_text("1")
            expect(page.locator('#failure-kinds tr[data-kind="other"]')).to_contain_text(
                "HTTP 500 from the site"
            )
            expect(page.locator("#failures")).not_to_contain_text("{ kind:")
            expect(page.locator("#workers")).to_contain_text("worker-a")

            queue.submit_many({"target_url": f"http://127.0.0.1:9/{i}"} for i in range(12))
            expect(pending).to_have_text("12", timeout=10_000)

            # Retry the failed job from its button (asks for the token), then drain.
            page.locator("#failures tr", has_text="HTTP 500 from the site").locator(
                "button", has_text="retry"
            ).click()
            expect(pending).to_have_text("13", timeout=10_000)
            page.locator("#workers button", has_text="drain").click()
            expect(page.locator("#workers")).to_contain_text("draining", timeout=10_000)
            expect(page.locator("#chart")).to_be_visible()

            # The page runs under its Content-Security-Policy (inline code by hash only).
            assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    job = queue.get("broken")
    assert job is not None and job.status.value == "pending", "retried through the page"
    assert queue.heartbeat("worker-a").draining, "drained through the page"
    assert queue.stats().by_status["pending"] == 13


def test_the_domains_panel_shows_the_busiest_and_the_throttled_sites(redis_url: str) -> None:
    queue = JobQueue(redis_url)
    queue.set_domain("busy.example", concurrency=1)
    queue.set_domain("slow.example", delay=1)
    queue.submit_many({"target_url": f"https://busy.example/{i}"} for i in range(25))
    queue.submit_many({"target_url": f"https://slow.example/{i}"} for i in range(3))
    queue.register_worker("w")
    claimed = queue.claim("w", 10)
    slow = next(j for j in claimed if "slow.example" in j.target_url)
    with (
        Coordinator(queue, "127.0.0.1:0", stats_interval=0.2) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://{server.address}/", timeout=15_000)
            expect(page.locator("#connection")).to_contain_text("live", timeout=10_000)
            busiest = page.locator("#domains-busiest tr")
            expect(busiest.first).to_have_attribute("data-key", "busy.example", timeout=10_000)
            expect(busiest.first).to_contain_text("24")  # waiting; 1 in flight, limit 1
            expect(busiest.first.locator("td").last).to_have_text("at limit")
            throttled = page.locator("#domains-throttled")
            expect(throttled).to_contain_text("none")

            queue.fail(slow, "HTTP 429", feedback="throttled", retry_after=300)
            row = page.locator('#domains-throttled tr[data-key="slow.example"]')
            expect(row).to_contain_text("(Retry-After)", timeout=10_000)
            expect(row.locator("td").nth(1)).to_have_text("1")  # one 429
            expect(page.locator('[data-count="paced keys"]')).to_have_text("2", timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("#domains").screenshot(path=str(ARTIFACTS / "dashboard-domains.png"))
        finally:
            browser.close()
