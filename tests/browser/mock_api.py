#!/usr/bin/env python3
"""A stand-in for the `api` function, to work on the dashboard and docs pages without the Rust server.

Serves functions/api/assets at the paths the function serves them (/dashboard, /docs, /assets/...,
/openapi.json) and fakes the JSON endpoints with moving data: every wall-clock second each symbol
may get a new tick (12 simulated seconds later), so prices change and M1 candles grow; M30 and H1
candles are rolled up from M1; indicators follow TA-Lib's definitions closely enough to draw.
Responses carry strong ETags and answer If-None-Match with 304. /data_usage needs HTTP Basic
credentials (default `wtc` / `wtc-local`) and answers hourly usage for 2024-01-01 and 2024-01-02.

    python3 tests/browser/mock_api.py --port 18099
    open http://127.0.0.1:18099/dashboard

`--market-auth` makes the market endpoints need the credentials too.

Controls for trying failure handling by hand (GET):
    /_mock/control?pause=1   freeze the market (every refresh becomes a 304; prices go stale)
    /_mock/control?fail=1    market endpoints answer 503 until fail=0
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import math
import mimetypes
import random
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ASSETS = Path(__file__).resolve().parents[2] / "functions" / "api" / "assets"
# The pages' policy, as the function sends it.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
INTERVALS = {"M1": 60, "M30": 1800, "H1": 3600}
TICK_SECONDS = 12  # simulated seconds per wall-clock second
HISTORY_MINUTES = 400
SYMBOLS_PAGE = 3
UTC = timezone.utc

# symbol, start of simulated time, first price, per-tick volatility, latest price source
SYMBOLS = [
    ("MRVZAR", datetime(2024, 1, 1, 0, 0, tzinfo=UTC), 1.5234, 0.0015, "tick"),
    ("WAKMRV", datetime(2024, 1, 1, 0, 0, tzinfo=UTC), 0.8120, 0.0015, "tick"),
    ("RELIANCE.NS", datetime(2024, 1, 1, 3, 45, tzinfo=UTC), 2750.0, 0.0008, "bar"),
    ("TCS.NS", datetime(2024, 1, 1, 3, 45, tzinfo=UTC), 3810.0, 0.0007, "bar"),
    ("EURUSD=X", datetime(2024, 1, 1, 3, 45, tzinfo=UTC), 1.0921, 0.0004, "tick"),
]


def rfc3339(t: datetime) -> str:
    t = t.astimezone(UTC)
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    """RFC 3339 or `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC)."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class BadParameter(Exception):
    def __init__(self, parameter: str, message: str, status: int = 400):
        super().__init__(message)
        self.parameter = parameter
        self.status = status


class Series:
    """One symbol's ticks folded into M1 candles."""

    def __init__(self, symbol, start, price, vol, source, rng):
        self.symbol, self.vol, self.source, self.rng = symbol, vol, source, rng
        self.mid = price
        self.now = start  # simulated time of the newest tick
        self.m1: dict[datetime, dict] = {}
        self.previous_close = None
        self.last = None
        self.updated_at = datetime.now(UTC)

    def tick(self, at: datetime, wall: datetime):
        self.mid *= math.exp(self.rng.gauss(0, self.vol))
        spread = self.mid * self.rng.uniform(0.0005, 0.002)
        digits = 2 if self.mid >= 100 else 4
        bid, ask = round(self.mid - spread / 2, digits), round(self.mid + spread / 2, digits)
        price = round((bid + ask) / 2, digits + 1)
        minute = at.replace(second=0, microsecond=0)
        c = self.m1.get(minute)
        if c is None:
            closed = [k for k in self.m1 if k < minute]
            if closed:
                self.previous_close = self.m1[max(closed)]["close"]
            c = self.m1[minute] = {"open": price, "high": price, "low": price, "close": price, "ticks": 0, "volume": 0.0}
        c["high"], c["low"], c["close"] = max(c["high"], price), min(c["low"], price), price
        c["ticks"] += 1
        if self.source == "bar":
            c["volume"] += float(self.rng.randint(100, 5000))
        self.now = at
        self.last = {"at": at, "bid": bid, "ask": ask, "price": price}
        self.updated_at = wall

    def candles(self, interval: str) -> list[dict]:
        """Every candle of an interval, oldest first."""
        size = INTERVALS[interval]
        out: dict[datetime, dict] = {}
        for minute in sorted(self.m1):
            m = self.m1[minute]
            epoch = int(minute.timestamp())
            start = datetime.fromtimestamp(epoch - epoch % size, UTC)
            c = out.get(start)
            if c is None:
                out[start] = dict(m, start=start)
            else:
                c["high"], c["low"], c["close"] = max(c["high"], m["high"]), min(c["low"], m["low"]), m["close"]
                c["ticks"] += m["ticks"]
                c["volume"] += m["volume"]
        result = []
        for start, c in out.items():
            closed = start + timedelta(seconds=size) <= self.now
            result.append(dict(c, closed=closed))
        return result


def ema(values, n):
    out = [None] * len(values)
    if len(values) < n:
        return out
    k = 2 / (n + 1)
    e = sum(values[:n]) / n
    out[n - 1] = e
    for i in range(n, len(values)):
        e = values[i] * k + e * (1 - k)
        out[i] = e
    return out


def indicators(candles):
    """TA-Lib-style SMA20, EMA8/12/21/26, RSI14, MACD(12,26,9), ATR8/21 over closed candles."""
    closes = [c["close"] for c in candles]
    n = len(closes)
    sma20 = [None] * n
    for i in range(19, n):
        sma20[i] = sum(closes[i - 19:i + 1]) / 20
    emas = {p: ema(closes, p) for p in (8, 12, 21, 26)}
    rsi = [None] * n
    if n > 14:
        gains = [max(closes[i] - closes[i - 1], 0) for i in range(1, n)]
        losses = [max(closes[i - 1] - closes[i], 0) for i in range(1, n)]
        ag, al = sum(gains[:14]) / 14, sum(losses[:14]) / 14
        for i in range(14, n):
            if i > 14:
                ag = (ag * 13 + gains[i - 1]) / 14
                al = (al * 13 + losses[i - 1]) / 14
            rsi[i] = 100.0 if al == 0 else 100 - 100 / (1 + ag / al)
    macd = [None] * n
    signal = [None] * n
    hist = [None] * n
    line = [emas[12][i] - emas[26][i] if emas[26][i] is not None else None for i in range(n)]
    valid = [v for v in line if v is not None]
    sig = ema(valid, 9)
    offset = n - len(valid)
    for j, s in enumerate(sig):
        if s is not None:
            i = offset + j
            macd[i], signal[i], hist[i] = line[i], s, line[i] - s
    atr = {}
    for p in (8, 21):
        out = [None] * n
        trs = [None] + [max(candles[i]["high"], candles[i - 1]["close"]) - min(candles[i]["low"], candles[i - 1]["close"]) for i in range(1, n)]
        if n > p:
            a = sum(trs[1:p + 1]) / p
            out[p] = a
            for i in range(p + 1, n):
                a = (a * (p - 1) + trs[i]) / p
                out[i] = a
        atr[p] = out
    rows = []
    for i, c in enumerate(candles):
        rows.append({
            "start": c["start"], "close": c["close"], "sma20": sma20[i],
            "ema8": emas[8][i], "ema12": emas[12][i], "ema21": emas[21][i], "ema26": emas[26][i],
            "rsi14": rsi[i], "macd": macd[i], "macd_signal": signal[i], "macd_histogram": hist[i],
            "atr8": atr[8][i], "atr21": atr[21][i],
        })
    return rows


class Market:
    def __init__(self, seed: int):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.paused = False
        self.failing = False
        now = datetime.now(UTC)
        self.series = {}
        for symbol, start, price, vol, source in SYMBOLS:
            s = Series(symbol, start, price, vol, source, random.Random(f"{seed}-{symbol}"))
            at = start
            for _ in range(HISTORY_MINUTES * 60 // TICK_SECONDS):
                s.tick(at, now)
                at += timedelta(seconds=TICK_SECONDS)
            self.series[symbol] = s
        self.stepped = time.monotonic()

    def advance(self):
        """One tick per symbol (each with probability 0.8) for each wall second since the last call."""
        with self.lock:
            now = time.monotonic()
            steps = int(now - self.stepped)
            if steps <= 0:
                return
            self.stepped += steps
            if self.paused:
                return
            wall = datetime.now(UTC)
            for _ in range(min(steps, 600)):
                for s in self.series.values():
                    if self.rng.random() < 0.8:
                        s.tick(s.now + timedelta(seconds=TICK_SECONDS, microseconds=self.rng.randint(0, 999) * 1000), wall)

    def get(self, symbol: str | None) -> Series:
        if not symbol:
            raise BadParameter("symbol", "`symbol` is required")
        s = self.series.get(symbol)
        if s is None:
            raise BadParameter("symbol", f"unknown symbol {symbol!r}", 404)
        return s


def one(params, name):
    values = params.get(name)
    return values[-1] if values else None


def ranged(params, rows):
    """start/end/limit/sort/page_token over rows with a `start` datetime, oldest first."""
    interval = one(params, "interval") or ""
    if interval not in INTERVALS:
        raise BadParameter("interval", "`interval` must be M1, M30 or H1")
    bounds = {}
    for name in ("start", "end"):
        text = one(params, name)
        if text is not None:
            value = parse_time(text)
            if value is None:
                raise BadParameter(name, f"`{name}` must be an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)")
            bounds[name] = value
    limit_text = one(params, "limit")
    limit = 500
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise BadParameter("limit", "`limit` must be an integer from 1 to 1000")
        limit = int(limit_text)
    sort = one(params, "sort") or "asc"
    if sort not in ("asc", "desc"):
        raise BadParameter("sort", "`sort` must be asc or desc")
    token = one(params, "page_token")
    after = None
    if token:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            after = parse_time(data["after"])
            if data.get("sort") != sort or after is None:
                raise ValueError
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise BadParameter("page_token", "`page_token` is not one this API gave")
    selected = [r for r in rows if ("start" not in bounds or r["start"] >= bounds["start"]) and ("end" not in bounds or r["start"] <= bounds["end"])]
    if sort == "desc":
        selected.reverse()
    if after is not None:
        selected = [r for r in selected if (r["start"] > after if sort == "asc" else r["start"] < after)]
    page, rest = selected[:limit], selected[limit:]
    next_token = None
    if rest:
        raw = json.dumps({"after": rfc3339(page[-1]["start"]), "sort": sort}).encode()
        next_token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return interval, page, next_token


def with_times(row):
    return {k: (rfc3339(v) if isinstance(v, datetime) else v) for k, v in row.items()}


USAGE_TYPES = [("data", "video"), ("data", "audio"), ("data", "image"), ("data", "text"), ("data", "application"), ("call", "voice"), ("call", "video")]


def usage_for(msisdn: str, start: datetime, end: datetime, daily: bool):
    rng_seed = int(hashlib.sha256(msisdn.encode()).hexdigest()[:8], 16)
    first = start.replace(minute=0, second=0, microsecond=0)
    last = end.replace(minute=0, second=0, microsecond=0)
    lo, hi = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, 23, tzinfo=UTC)
    buckets: dict[tuple, int] = {}
    hour = max(first, lo)
    while hour <= min(last, hi):
        for order, (category, kind) in enumerate(USAGE_TYPES):
            rng = random.Random(f"{rng_seed}-{hour.isoformat()}-{category}-{kind}")
            if rng.random() < 0.35:
                continue
            total = rng.randint(200_000, 2_000_000) * (1 + order % 3) if category == "data" else rng.randint(1, 1800)
            bucket = hour.replace(hour=0) if daily else hour
            buckets[(bucket, order)] = buckets.get((bucket, order), 0) + total
        hour += timedelta(hours=1)
    usage = []
    for (bucket, order), total in sorted(buckets.items()):
        category, kind = USAGE_TYPES[order]
        usage.append({
            "category": category, "usage_type": kind, "total": total,
            "measure": "bytes" if category == "data" else "seconds",
            "start_time": bucket.strftime("%Y-%m-%d %H:%M:%S"),
        })
    return usage


def compact(text):
    if text is None or len(text) != 14 or not text.isdigit():
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def openapi():
    def param(name, where="query", required=False, schema=None, description=""):
        return {"name": name, "in": where, "required": required, "schema": schema or {"type": "string"}, "description": description}

    error = {"description": "bad parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    ranged_params = [
        param("symbol", required=True), param("interval", required=True, schema={"type": "string", "enum": ["M1", "M30", "H1"]}),
        param("start"), param("end"), param("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000, "default": 500}),
        param("sort", schema={"type": "string", "enum": ["asc", "desc"], "default": "asc"}), param("page_token"),
    ]
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "WTC streaming API (mock)", "version": "0.0.0", "description": "The development mock's own minimal description."},
        "servers": [{"url": "."}],
        "paths": {
            "/symbols": {"get": {"summary": "Every symbol with data", "operationId": "symbols", "responses": {"200": ok}}},
            "/latest_price": {"get": {"summary": "Newest tick or bar of a symbol", "operationId": "latest_price", "parameters": [param("symbol", required=True)], "responses": {"200": ok, "400": error, "404": error}}},
            "/candles": {"get": {"summary": "OHLC candles", "operationId": "candles", "parameters": ranged_params, "responses": {"200": ok, "400": error, "404": error}}},
            "/indicators": {"get": {"summary": "Indicators per closed candle", "operationId": "indicators", "parameters": ranged_params, "responses": {"200": ok, "400": error, "404": error}}},
            "/data_usage": {"get": {
                "summary": "Hourly usage of an MSISDN", "operationId": "data_usage", "security": [{"basic": []}],
                "parameters": [param("msisdn", required=True), param("start_time", required=True), param("end_time", required=True), param("granularity", schema={"type": "string", "enum": ["hour", "day"]})],
                "responses": {"200": ok, "400": error, "401": error},
            }},
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}}, "required": ["error"]}},
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wtc-mock/1"
    market: Market
    user = "wtc"
    password = "wtc-local"
    market_auth = False
    quiet = False

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write("mock %s %s\n" % (self.address_string(), format % args))

    def send(self, status, body: bytes, content_type: str, extra=None, conditional=True):
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
        headers.update(extra or {})
        if status == 200 and conditional:
            headers["ETag"] = etag
            wanted = self.headers.get("If-None-Match")
            if wanted and (wanted.strip() == "*" or etag in [w.strip().removeprefix("W/") for w in wanted.split(",")]):
                self.send_response(304)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, status, value, extra=None):
        self.send(status, json.dumps(value).encode(), "application/json", extra)

    def file(self, path: Path):
        try:
            path = path.resolve()
            path.relative_to(ASSETS.resolve())
            body = path.read_bytes()
        except (OSError, ValueError):
            return self.json(404, {"error": "not found"})
        kind = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
                ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8"}.get(path.suffix)
        if kind is None:
            kind = "text/plain; charset=utf-8" if path.suffix == "" or path.name.startswith(("LICENSE", "NOTICE")) else (mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send(200, body, kind)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        route = url.path
        try:
            if route in ("/", "/dashboard"):
                return self.file(ASSETS / "dashboard.html") if route == "/dashboard" else self.redirect("dashboard")
            if route == "/docs":
                return self.file(ASSETS / "docs.html")
            if route.startswith("/assets/"):
                return self.file(ASSETS / route[len("/assets/"):])
            if route == "/openapi.json":
                return self.json(200, openapi())
            if route == "/health":
                return self.json(200, {"status": "ok"})
            if route == "/_mock/control":
                m = self.market
                if "pause" in params:
                    m.paused = one(params, "pause") == "1"
                if "fail" in params:
                    m.failing = one(params, "fail") == "1"
                return self.json(200, {"paused": m.paused, "failing": m.failing}, {"Cache-Control": "no-store"})
            if route == "/data_usage":
                return self.data_usage(params)
            if route in ("/symbols", "/latest_price", "/candles", "/indicators"):
                if self.market_auth and not self.authorized():
                    return self.refuse()
                self.market.advance()
                if self.market.failing:
                    return self.json(503, {"error": "the store could not be read; try again"})
                with self.market.lock:
                    return getattr(self, route[1:])(params)
            return self.json(404, {"error": f"no route {route}"})
        except BadParameter as e:
            return self.json(e.status, {"error": str(e), "parameter": e.parameter})

    def redirect(self, to):
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def symbols(self, params):
        """Pages of SYMBOLS_PAGE symbols (small, so that clients must follow next_page_token)."""
        token = one(params, "page_token")
        first = 0
        if token:
            try:
                first = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().removeprefix("symbols:"))
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise BadParameter("page_token", "`page_token` is not one this API gave")
        everything = list(self.market.series.values())
        page = everything[first:first + SYMBOLS_PAGE]
        rest = first + SYMBOLS_PAGE < len(everything)
        next_token = base64.urlsafe_b64encode(f"symbols:{first + SYMBOLS_PAGE}".encode()).decode().rstrip("=") if rest else None
        out = []
        for s in page:
            out.append({
                "symbol": s.symbol, "price": s.last["price"],
                "change": None if s.previous_close is None else round(s.last["price"] - s.previous_close, 6),
                "at": rfc3339(s.last["at"]), "updated_at": rfc3339(s.updated_at), "intervals": list(INTERVALS),
            })
        self.json(200, {"symbols": out, "next_page_token": next_token})

    def latest_price(self, params):
        s = self.market.get(one(params, "symbol"))
        last, tick = s.last, s.source == "tick"
        newest = s.m1[max(s.m1)]
        self.json(200, {
            "symbol": s.symbol, "source": s.source, "at": rfc3339(last["at"]), "updated_at": rfc3339(s.updated_at),
            "age_seconds": round((datetime.now(UTC) - s.updated_at).total_seconds(), 3), "price": last["price"],
            "bid": last["bid"] if tick else None, "ask": last["ask"] if tick else None,
            "mid": last["price"] if tick else None, "close": None if tick else newest["close"],
            "volume": None if tick else newest["volume"], "previous_close": s.previous_close,
            "change": None if s.previous_close is None else round(last["price"] - s.previous_close, 6),
        })

    def candles(self, params):
        s = self.market.get(one(params, "symbol"))
        interval = one(params, "interval")
        if interval not in INTERVALS:
            raise BadParameter("interval", "`interval` must be M1, M30 or H1")
        interval, page, token = ranged(params, s.candles(interval))
        self.json(200, {"symbol": s.symbol, "interval": interval, "candles": [with_times(c) for c in page], "next_page_token": token})

    def indicators(self, params):
        s = self.market.get(one(params, "symbol"))
        interval = one(params, "interval")
        if interval not in INTERVALS:
            raise BadParameter("interval", "`interval` must be M1, M30 or H1")
        closed = [c for c in s.candles(interval) if c["closed"]]
        interval, page, token = ranged(params, indicators(closed))
        self.json(200, {"symbol": s.symbol, "interval": interval, "indicators": [with_times(r) for r in page], "next_page_token": token})

    def authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return False
        return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(password.encode(), self.password.encode())

    def refuse(self):
        self.json(401, {"error": "missing or wrong credentials (HTTP Basic)"},
                  {"WWW-Authenticate": 'Basic realm="wtc-usage", charset="UTF-8"'})

    def data_usage(self, params):
        if not self.authorized():
            return self.refuse()
        msisdn = one(params, "msisdn") or ""
        if not (1 <= len(msisdn) <= 15 and msisdn.isdigit()):
            raise BadParameter("msisdn", "`msisdn` must be 1 to 15 digits")
        times = []
        for name in ("start_time", "end_time"):
            text = one(params, name)
            if text is None:
                raise BadParameter(name, f"`{name}` is required (YYYYMMDDHHMMSS)")
            value = compact(text)
            if value is None:
                raise BadParameter(name, f"`{name}` must be a UTC time as YYYYMMDDHHMMSS")
            times.append(value)
        start, end = times
        if start > end:
            raise BadParameter("start_time", "`start_time` must not be after `end_time`")
        granularity = one(params, "granularity") or "hour"
        if granularity not in ("hour", "day"):
            raise BadParameter("granularity", "`granularity` must be `hour` or `day`")
        self.json(200, {
            "msisdn": msisdn, "start_time": start.strftime("%Y-%m-%d %H:%M:%S"), "end_time": end.strftime("%Y-%m-%d %H:%M:%S"),
            "usage": usage_for(msisdn, start, end, granularity == "day"),
        })


def serve(host: str, port: int, seed: int = 42, user: str = "wtc", password: str = "wtc-local", quiet: bool = False,
          market_auth: bool = False):
    """Starts the mock in a thread; returns the server (its .server_address has the port)."""
    handler = type("MockHandler", (Handler,), {"market": Market(seed), "user": user, "password": password, "quiet": quiet,
                                               "market_auth": market_auth})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--user", default="wtc")
    parser.add_argument("--password", default="wtc-local")
    parser.add_argument("--market-auth", action="store_true", help="market endpoints need the credentials too")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args()
    server = serve(args.host, args.port, args.seed, args.user, args.password, args.quiet, args.market_auth)
    host, port = server.server_address[:2]
    print(f"mock API on http://{host}:{port}/ (dashboard: /dashboard, docs: /docs); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
