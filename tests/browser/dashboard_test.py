#!/usr/bin/env python3
"""Browser test of /dashboard and /docs in headless Chromium (Debian's, driven by Playwright).

Checks, against a running API (the local stack, or this folder's mock with --mock):
  - /dashboard draws candles (window.wtcDashboard.candles > 0) and indicator overlays;
  - a latest price in the table changes without a reload;
  - the page refreshes on its own with conditional requests (counts of 200 and 304 answers);
  - a usage lookup with the given credentials draws bars (usagePoints > 0); a wrong password shows the
    401 error and a malformed MSISDN the 400 error naming the parameter;
  - /docs renders Swagger UI with the operations (/latest_price among them) and "try it out" works;
  - no console error, no uncaught exception, and no request to any host but the base URL's;
  - with --mock also: a failing store (503) is shown as an error and stale data, the chart keeps
    its candles, and the page recovers by itself; at least one refresh is answered 304.
Screenshots go to --out. Prints one summary line; exits non-zero with the reason on any failure.

    python tests/browser/dashboard_test.py --url http://127.0.0.1:18089 --msisdn 9724515726732
    python tests/browser/dashboard_test.py --mock --out /tmp/shots      # against mock_api.py

Needs `playwright` from PyPI (its own browser download is not used) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Failure(Exception):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="base URL of the API, e.g. http://127.0.0.1:18089 (not with --mock)")
    p.add_argument("--mock", action="store_true", help="start tests/browser/mock_api.py on a free port and test against it")
    p.add_argument("--user", default="wtc")
    p.add_argument("--password", default="wtc-local")
    p.add_argument("--msisdn", default="9724515726732", help="an MSISDN with usage in the range")
    p.add_argument("--start", default="2024-01-01T00:00", help="usage range start, YYYY-MM-DDTHH:MM (UTC)")
    p.add_argument("--end", default="2024-01-03T00:00", help="usage range end, YYYY-MM-DDTHH:MM (UTC)")
    p.add_argument("--symbol", help="chart this symbol (chosen by clicking its row); default: the page's first")
    p.add_argument("--out", default="target/browser-test", help="folder for the screenshots")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each expected change")
    p.add_argument("--mock-market-auth", action="store_true", help="with --mock: market endpoints need the credentials too")
    p.add_argument("--require-304", action="store_true", help="fail unless at least one refresh was answered 304")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"), help="browser executable")
    args = p.parse_args(argv)
    if bool(args.url) == args.mock:
        p.error("give exactly one of --url and --mock")
    return args


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def api_symbols(base: str, timeout: float, authorization: str | None = None) -> set[str]:
    """Every symbol /symbols lists, following next_page_token."""
    symbols, url = set(), f"{base}/symbols"
    for _ in range(100):
        request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
        symbols.update(s["symbol"] for s in body["symbols"])
        token = body.get("next_page_token")
        if not token:
            return symbols
        url = f"{base}/symbols?page_token={urllib.parse.quote(token)}"
    raise Failure("/symbols gave more than 100 pages")


def run(args, set_failing=None) -> str:
    """Runs every check; returns the summary line or raises Failure. `set_failing(bool)`, given with
    the mock, makes its market endpoints answer 503 or not."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    base = args.url.rstrip("/")
    base_origin = origin(base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timeout_ms = args.timeout * 1000
    if not Path(args.chromium).exists():
        raise Failure(f"{args.chromium} not found (apt-get install -y chromium)")

    foreign: list[str] = []
    console_errors: list[str] = []
    requests: list[str] = []
    # Error answers the test provokes on purpose, as (path, status); Chromium logs each as
    # "Failed to load resource".
    expected_errors: set[tuple[str, int]] = set()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)

        def on_request(request):
            url = request.url
            requests.append(url)
            scheme = urlsplit(url).scheme
            if scheme in ("data", "blob", "about"):
                return
            if origin(url) != base_origin:
                foreign.append(url)

        def on_console(message):
            if message.type != "error":
                return
            text = message.text
            where = (message.location or {}).get("url", "")
            if text.startswith("Failed to load resource") and where:
                path = urlsplit(where).path
                if any(path == p and f"status of {status} " in text for p, status in expected_errors):
                    return
            console_errors.append(f"{text} ({where})" if where else text)

        context.on("request", on_request)
        context.on("console", on_console)
        # Every page of the context (this one and any popup) reports its uncaught exceptions.
        context.on("page", lambda p: p.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}")))
        page = context.new_page()

        def state():
            return page.evaluate("() => JSON.parse(JSON.stringify(window.wtcDashboard || null))")

        def wait_for(expression, what, arg=None):
            try:
                page.wait_for_function(expression, arg=arg, timeout=timeout_ms, polling=250)
            except PlaywrightError as e:
                raise Failure(f"{what} within {args.timeout:g} s (dashboard state: {state()}; {str(e).splitlines()[0]})")

        def table_prices():
            return page.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('#symbols-table tbody tr')]
                    .map(r => [r.dataset.symbol, r.querySelector('td.price').textContent]))"""
            )

        # An API set to require credentials on market endpoints too: the page sends the usage form's.
        authorization = None
        try:
            api_symbols(base, args.timeout)
        except urllib.error.HTTPError as e:
            if e.code != 401:
                raise Failure(f"GET /symbols answered {e.code}")
            authorization = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()

        # With market credentials, market requests answer 401 until the form has them and while
        # the wrong-password lookup below has put a wrong one there.
        market_401 = {(p, 401) for p in ("/symbols", "/candles", "/indicators", "/latest_price")} if authorization else set()
        expected_errors.update(market_401)

        # 1. The dashboard draws candles and indicators.
        response = page.goto(f"{base}/dashboard", wait_until="load", timeout=timeout_ms)
        if response is None or response.status != 200:
            raise Failure(f"GET /dashboard answered {response.status if response else 'nothing'}")
        if authorization:
            page.fill("#usage-user", args.user)
            page.fill("#usage-password", args.password)
        csp = response.headers.get("content-security-policy")
        wait_for("() => window.wtcDashboard && window.wtcDashboard.candles > 0", "the candle chart drew no candles")
        if args.symbol:
            row = page.locator(f'#symbols-table tbody tr[data-symbol="{args.symbol}"]')
            try:
                row.click(timeout=timeout_ms)
            except PlaywrightError:
                raise Failure(f"no row for symbol {args.symbol} in the prices table (have {list(table_prices())})")
            wait_for("(s) => window.wtcDashboard.symbol === s && window.wtcDashboard.candles > 0",
                     f"the chart of {args.symbol} drew no candles", args.symbol)
        wait_for("() => window.wtcDashboard.indicators > 0", "the indicator overlays drew no points")
        first = state()
        if not page.locator("#price-chart canvas").count():
            raise Failure("the chart has no canvas")
        if not page.locator('a[href="docs"]').count():
            raise Failure("no link to docs on the dashboard")
        if not page.locator('a[href="https://www.tradingview.com/"]').count():
            raise Failure("no TradingView attribution link on the dashboard")

        # 2. The table lists every symbol of /symbols (all its pages), and a price changes without a reload.
        deadline = time.monotonic() + args.timeout
        while True:  # a symbol whose first tick comes meanwhile shows at the next refresh
            listed = api_symbols(base, args.timeout, authorization)
            before = table_prices()
            if set(before) == listed or time.monotonic() > deadline:
                break
            page.wait_for_timeout(1000)
        if not before:
            raise Failure("the latest-prices table is empty")
        if set(before) != listed:
            raise Failure(f"the latest-prices table lists {sorted(before)}, /symbols has {sorted(listed)}")
        changed = None
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and changed is None:
            page.wait_for_timeout(500)
            now = table_prices()
            for symbol, price in now.items():
                if symbol in before and price != before[symbol]:
                    changed = (symbol, before[symbol], price)
                    break
        if changed is None:
            raise Failure(f"no latest price changed in {args.timeout:g} s without a reload (prices {before})")
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)

        # 3. It refreshed on its own, conditionally.
        mid = state()["refreshes"]
        if args.require_304 and mid["notModified"] == 0:
            wait_for("() => window.wtcDashboard.refreshes.notModified > 0", "no refresh was answered 304 Not Modified")
        if mid["ok"] + mid["notModified"] <= first["refreshes"]["ok"] + first["refreshes"]["notModified"]:
            raise Failure(f"the page did not refresh on its own (refreshes {first['refreshes']} then {mid})")

        # 4. A usage lookup draws its chart.
        def look_up(password, msisdn):
            page.fill("#usage-msisdn", msisdn)
            page.fill("#usage-start", args.start)
            page.fill("#usage-end", args.end)
            page.fill("#usage-user", args.user)
            page.fill("#usage-password", password)
            before_lookups = page.evaluate("() => { const l = window.wtcDashboard.lookups; return l.ok + l.notModified + l.failed; }")
            page.click("#usage-submit")
            wait_for("(n) => { const l = window.wtcDashboard.lookups; return l.ok + l.notModified + l.failed > n; }",
                     "the usage lookup got no answer", before_lookups)
            page.wait_for_timeout(300)  # let the answer be drawn
            return state()

        got = look_up(args.password, args.msisdn)
        if got["usageError"]:
            raise Failure(f"the usage lookup failed: {got['usageError']}")
        if not got["usagePoints"] > 0:
            raise Failure(f"the usage lookup drew no bars for {args.msisdn} from {args.start} to {args.end}")
        usage_points = got["usagePoints"]
        page.locator("#usage-title").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "dashboard-usage.png"), full_page=True)

        # 5. A wrong password and a malformed MSISDN show their errors.
        expected_errors.update({("/data_usage", 401), ("/data_usage", 400)})
        got = look_up(args.password + "-wrong", args.msisdn)
        shown = page.locator("#usage-error")
        if got.get("usageStatus") != 401 or not shown.is_visible() or "401" not in shown.inner_text():
            raise Failure(f"a wrong password did not show the 401 error (state {got}, shown {shown.inner_text()!r})")
        if got["usagePoints"] != 0:
            raise Failure("the usage chart kept bars after a refused lookup")
        page.screenshot(path=str(out / "dashboard-usage-401.png"), full_page=True)
        got = look_up(args.password, "12ab")
        text = shown.inner_text() if shown.is_visible() else ""
        if got.get("usageStatus") != 400 or "400" not in text or "msisdn" not in text:
            raise Failure(f"a malformed MSISDN did not show the 400 error naming `msisdn` (shown {text!r})")
        expected_errors.intersection_update(market_401)

        # 6. (mock only) A failing store: the error is shown, the data kept, and the page recovers.
        if set_failing is not None:
            expected_errors.update({(p, 503) for p in ("/symbols", "/candles", "/indicators", "/latest_price")})
            kept = state()["candles"]
            set_failing(True)
            wait_for("() => window.wtcDashboard.lastError !== null && window.wtcDashboard.stale",
                     "a failing refresh was not reported")
            status_text = page.locator("#status").inner_text()
            if "failed" not in status_text.lower() or not page.locator("#chart-stale").is_visible():
                raise Failure(f"a failing refresh is not shown (status {status_text!r})")
            if state()["candles"] != kept:
                raise Failure("the chart dropped its candles when a refresh failed")
            page.screenshot(path=str(out / "dashboard-failing.png"), full_page=True)
            set_failing(False)
            wait_for("() => window.wtcDashboard.lastError === null && !window.wtcDashboard.stale",
                     "the page did not recover after the store came back")
            expected_errors.intersection_update(market_401)
        last = state()

        # 7. The docs render the operations, and "try it out" reaches this API.
        response = page.goto(f"{base}/docs", wait_until="load", timeout=timeout_ms)
        if response is None or response.status != 200:
            raise Failure(f"GET /docs answered {response.status if response else 'nothing'}")
        try:
            page.wait_for_selector('.opblock-summary-path[data-path="/latest_price"]', timeout=timeout_ms)
        except PlaywrightError:
            raise Failure("Swagger UI rendered no operation for /latest_price at /docs")
        operations = page.locator(".opblock-summary-path").count()
        if authorization:
            expected_errors.add(("/symbols", 401))
        block = page.locator(".opblock:has(.opblock-summary-path[data-path='/symbols'])").first
        tried = "not tried"
        if block.count():
            block.locator(".opblock-summary").click()
            execute = block.locator("button.execute")
            try:
                execute.click(timeout=timeout_ms)
                block.locator(".live-responses-table tr.response .response-col_status").first.wait_for(timeout=timeout_ms)
                tried = block.locator(".live-responses-table tr.response .response-col_status").first.inner_text().split()[0]
            except PlaywrightError as e:
                raise Failure(f"'try it out' on GET /symbols in /docs did not run: {str(e).splitlines()[0]}")
            # Without "Authorize" an API that requires credentials on market endpoints answers 401.
            if not tried.startswith("200") and not (authorization and tried.startswith("401")):
                raise Failure(f"'try it out' on GET /symbols in /docs answered {tried!r}")
        page.screenshot(path=str(out / "docs.png"), full_page=True)

        browser.close()

    if console_errors:
        raise Failure("console errors: " + " | ".join(console_errors[:10]))
    if foreign:
        raise Failure(f"requests to other hosts than {base}: " + ", ".join(sorted(set(foreign))[:10]))
    r = last["refreshes"]
    symbol, old, new = changed
    note = "" if r["notModified"] else " (no 304: the data changed between every refresh)"
    return (
        f"browser test passed: {first['symbol']} {first['interval']} {first['candles']} candles, "
        f"{first['indicators']} indicator points; {symbol} {old} -> {new} without reload; "
        f"refreshes 200 x{r['ok']}, 304 x{r['notModified']}, failed x{r['failed']}{note}; "
        f"usage {usage_points} bars, 401 and 400 shown; docs {operations} operations, try-it-out {tried}; "
        f"{len(requests)} requests, all to {base_origin[1]}; CSP {'sent' if csp else 'not sent'}; screenshots in {out}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    server = None
    if args.mock:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import mock_api

        server = mock_api.serve("127.0.0.1", 0, user=args.user, password=args.password, quiet=True,
                                market_auth=args.mock_market_auth)
        args.url = f"http://127.0.0.1:{server.server_address[1]}"
        args.require_304 = True
        market = server.RequestHandlerClass.market

        def set_failing(on: bool):
            market.failing = on
    try:
        print(run(args, set_failing if args.mock else None), flush=True)
        return 0
    except Failure as e:
        print(f"browser test FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    except ImportError as e:
        print(f"browser test FAILED: {e} (pip install 'playwright>=1.40,<2')", file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # a browser that would not start, a page that would not load, ...
        print(f"browser test FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server is not None:
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
