// The dashboard: candles and indicators of one symbol, every symbol's latest price, and a usage
// lookup, kept current by conditional requests every few seconds. Plain browser JavaScript, no build
// step; loaded after lightweight-charts (global `LightweightCharts`). All URLs are relative so the page
// works at /dashboard as well as under an API Gateway stage (/<stage>/dashboard).
"use strict";

(function () {
  const LC = window.LightweightCharts;
  const REFRESH_MS = 3000;
  const MAX_BACKOFF_MS = 30000;
  const STALE_SECONDS = 30;
  const CHART_BARS = 300;
  const MAX_SYMBOL_PAGES = 20;
  const INTERVALS = ["M1", "M30", "H1"];
  const INTERVAL_SECONDS = { M1: 60, M30: 1800, H1: 3600 };

  // State the tests read; updated in place.
  const dash = {
    symbol: null,
    interval: "M1",
    candles: 0,
    indicators: 0,
    prices: {},
    changes: {},
    refreshes: { ok: 0, notModified: 0, failed: 0 },
    lookups: { ok: 0, notModified: 0, failed: 0 },
    ticks: 0,
    lastRefreshAt: null,
    lastError: null,
    stale: false,
    usagePoints: 0,
    usageError: null,
    usageStatus: null,
  };
  window.wtcDashboard = dash;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- requests

  class ApiError extends Error {
    constructor(path, status, body, text) {
      let message;
      if (status === 0) {
        message = `${path}: no answer (${text})`;
      } else {
        const detail = body && typeof body.error === "string" ? body.error : text || "";
        message = `${path}: ${status}${detail ? " " + detail : ""}`;
        if (body && body.parameter) message += ` (parameter ${body.parameter})`;
      }
      super(message);
      this.path = path;
      this.status = status;
      this.body = body;
    }
  }

  // url -> { etag, body } of its last 200 answer.
  const lastAnswers = new Map();
  // Server clock minus ours (ms), from the Date header, so that staleness does not depend on the
  // browser's clock being right.
  let clockSkewMs = 0;
  const serverNow = () => Date.now() + clockSkewMs;

  // GET a JSON resource conditionally. Resolves { body, changed }; rejects with ApiError.
  // `credentials: "omit"`: the browser never adds stored credentials or cookies and never opens its
  // own login dialog on a 401; an Authorization header is only ever the one given here.
  async function getJson(url, counter, authorization, cacheKey) {
    const key = cacheKey || url;
    const previous = lastAnswers.get(key);
    const headers = { Accept: "application/json" };
    if (authorization) headers.Authorization = authorization;
    if (previous) headers["If-None-Match"] = previous.etag;
    const path = url.split("?")[0];
    let response;
    try {
      response = await fetch(url, { cache: "no-store", credentials: "omit", headers });
    } catch (e) {
      counter.failed++;
      throw new ApiError(path, 0, null, e && e.message ? e.message : String(e));
    }
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) clockSkewMs = date - Date.now();
    if (response.status === 304 && previous) {
      counter.notModified++;
      return { body: previous.body, changed: false };
    }
    const text = await response.text().catch(() => "");
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    if (!response.ok || body === null) {
      counter.failed++;
      throw new ApiError(path, response.status, body, body === null && response.ok ? "not JSON" : response.statusText);
    }
    counter.ok++;
    const etag = response.headers.get("ETag");
    if (etag) lastAnswers.set(key, { etag, body });
    else lastAnswers.delete(key);
    return { body, changed: true };
  }

  // ---------------------------------------------------------------- formatting

  // RFC 3339 (or "YYYY-MM-DD HH:MM:SS", UTC) -> UNIX seconds; fractions past milliseconds dropped.
  function parseTime(text) {
    if (typeof text !== "string") return NaN;
    let t = text.trim().replace(" ", "T");
    t = t.replace(/(\.\d{3})\d+/, "$1");
    if (!/[zZ]|[+-]\d\d:?\d\d$/.test(t)) t += "Z";
    return Date.parse(t) / 1000;
  }

  function precisionFor(price) {
    const p = Math.abs(price);
    if (!Number.isFinite(p)) return 2;
    if (p >= 1000) return 2;
    if (p >= 10) return 3;
    return 4;
  }

  const fmt = (value, digits) =>
    value === null || value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits);

  function fmtSigned(value, digits) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "–";
    return (value > 0 ? "+" : value < 0 ? "−" : "") + Math.abs(value).toFixed(digits);
  }

  function fmtTimeUtc(text) {
    const s = parseTime(text);
    if (!Number.isFinite(s)) return "–";
    return new Date(s * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "");
  }

  function fmtAge(seconds) {
    if (!Number.isFinite(seconds)) return "–";
    if (seconds < 1) return "now";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function fmtBytes(value) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let v = Math.abs(value);
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
  }

  const fmtSecondsAxis = (value) => `${Math.round(value).toLocaleString("en-US")} s`;

  function fmtSeconds(value) {
    const v = Math.round(Math.abs(value));
    if (v < 60) return `${v} s`;
    if (v < 3600) return `${Math.floor(v / 60)} min ${v % 60 ? (v % 60) + " s" : ""}`.trim();
    const h = Math.floor(v / 3600);
    const m = Math.round((v % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }

  const ageOf = (updatedAt) => (serverNow() / 1000 - parseTime(updatedAt));

  // ---------------------------------------------------------------- charts

  const theme = {
    background: "#131722",
    text: "#c9ced8",
    grid: "#1f2533",
    border: "#2a3142",
    up: "#26a69a",
    down: "#ef5350",
    sma20: "#f5c542",
    ema8: "#40c4ff",
    ema21: "#ff7ad9",
    rsi: "#b39ddb",
    macd: "#4fc3f7",
    signal: "#ffb74d",
  };

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // Time-axis labels in UTC: "Jan 2" where a day starts, "HH:MM" otherwise.
  function tickMarkFormatter(time, tickMarkType) {
    if (typeof time !== "number") return null;
    const d = new Date(time * 1000);
    const day = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    switch (tickMarkType) {
      case LC.TickMarkType.Year:
      case LC.TickMarkType.Month:
      case LC.TickMarkType.DayOfMonth:
        return day;
      default:
        return d.toISOString().slice(11, 16);
    }
  }

  function baseOptions() {
    return {
      autoSize: true,
      layout: {
        background: { type: "solid", color: theme.background },
        textColor: theme.text,
        fontSize: 12,
        attributionLogo: true,
        panes: { separatorColor: theme.border, separatorHoverColor: "rgba(120, 130, 150, 0.25)" },
      },
      grid: { vertLines: { color: theme.grid }, horzLines: { color: theme.grid } },
      rightPriceScale: { borderColor: theme.border },
      timeScale: { borderColor: theme.border, timeVisible: true, secondsVisible: false, tickMarkFormatter },
      crosshair: { mode: LC.CrosshairMode.Normal },
    };
  }

  const line = (color, width) => ({
    color,
    lineWidth: width || 2,
    priceLineVisible: false,
    lastValueVisible: false,
    crosshairMarkerVisible: false,
  });

  const priceChart = LC.createChart($("price-chart"), baseOptions());
  const candleSeries = priceChart.addSeries(LC.CandlestickSeries, {
    upColor: theme.up,
    downColor: theme.down,
    borderVisible: false,
    wickUpColor: theme.up,
    wickDownColor: theme.down,
  }, 0);
  const smaSeries = priceChart.addSeries(LC.LineSeries, line(theme.sma20), 0);
  const ema8Series = priceChart.addSeries(LC.LineSeries, line(theme.ema8, 1), 0);
  const ema21Series = priceChart.addSeries(LC.LineSeries, line(theme.ema21, 1), 0);
  const rsiSeries = priceChart.addSeries(LC.LineSeries, Object.assign(line(theme.rsi), {
    lastValueVisible: true,
    autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 100 } }),
  }), 1);
  for (const level of [70, 30]) {
    rsiSeries.createPriceLine({ price: level, color: "#5d6579", lineWidth: 1, lineStyle: LC.LineStyle.Dashed, axisLabelVisible: false, title: String(level) });
  }
  rsiSeries.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.08 } });
  const histSeries = priceChart.addSeries(LC.HistogramSeries, { priceLineVisible: false, lastValueVisible: false }, 2);
  const macdSeries = priceChart.addSeries(LC.LineSeries, Object.assign(line(theme.macd), { lastValueVisible: true }), 2);
  const signalSeries = priceChart.addSeries(LC.LineSeries, line(theme.signal, 1), 2);
  {
    const panes = priceChart.panes();
    panes[0].setStretchFactor(3);
    panes[1].setStretchFactor(1);
    panes[2].setStretchFactor(1.2);
  }

  function setPricePrecision(digits) {
    const priceFormat = { type: "price", precision: digits, minMove: Math.pow(10, -digits) };
    for (const s of [candleSeries, smaSeries, ema8Series, ema21Series]) s.applyOptions({ priceFormat });
    const small = { type: "price", precision: digits + 1, minMove: Math.pow(10, -(digits + 1)) };
    for (const s of [histSeries, macdSeries, signalSeries]) s.applyOptions({ priceFormat: small });
    rsiSeries.applyOptions({ priceFormat: { type: "price", precision: 1, minMove: 0.1 } });
  }

  // The newest data drawn, for the legend when the crosshair is away.
  let drawn = { candles: [], indicators: [], digits: 4 };

  function showLegend(time) {
    const d = drawn.digits;
    let candle = null;
    let ind = null;
    if (time === undefined) {
      candle = drawn.candles[drawn.candles.length - 1] || null;
      ind = drawn.indicators[drawn.indicators.length - 1] || null;
    } else {
      candle = drawn.candles.find((c) => c.time === time) || null;
      ind = drawn.indicators.find((i) => i.time === time) || null;
    }
    const title = `${dash.symbol || ""} · ${dash.interval}`;
    $("legend-ohlc").textContent = candle
      ? `${title}  ${fmtTimeUtc(new Date(candle.time * 1000).toISOString())}  O ${fmt(candle.open, d)}  H ${fmt(candle.high, d)}  L ${fmt(candle.low, d)}  C ${fmt(candle.close, d)}${candle.closed ? "" : " (open)"}`
      : title;
    const v = (field, digits) => (ind ? fmt(ind[field], digits) : "–");
    $("legend-sma20").textContent = v("sma20", d);
    $("legend-ema8").textContent = v("ema8", d);
    $("legend-ema21").textContent = v("ema21", d);
    $("legend-rsi").textContent = v("rsi14", 1);
    $("legend-macd").textContent = v("macd", d + 1);
    $("legend-signal").textContent = v("macd_signal", d + 1);
    $("legend-hist").textContent = v("macd_histogram", d + 1);
  }

  priceChart.subscribeCrosshairMove((param) => {
    showLegend(param && param.time !== undefined ? param.time : undefined);
  });

  const pointOrGap = (time, value) =>
    value === null || value === undefined || !Number.isFinite(value) ? { time } : { time, value };

  // Draws a newest-first page of candles, keeping the view at the newest bar unless the user scrolled away.
  function drawCandles(newestFirst) {
    const candles = [];
    for (const c of newestFirst) {
      const time = parseTime(c.start);
      if (!Number.isFinite(time)) continue;
      candles.push({ time, open: c.open, high: c.high, low: c.low, close: c.close, closed: c.closed });
    }
    candles.sort((a, b) => a.time - b.time);
    const first = drawn.candles.length === 0;
    const atNewest = priceChart.timeScale().scrollPosition() > -1;
    if (candles.length) {
      const digits = precisionFor(candles[candles.length - 1].close);
      if (digits !== drawn.digits || first) setPricePrecision(digits);
      drawn.digits = digits;
    }
    candleSeries.setData(candles.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
    drawn.candles = candles;
    dash.candles = candles.length;
    $("chart-empty").hidden = candles.length > 0;
    if (first && candles.length) {
      const n = candles.length;
      priceChart.timeScale().setVisibleLogicalRange({ from: Math.max(0, n - 120), to: n + 3 });
    } else if (atNewest) {
      priceChart.timeScale().scrollToRealTime();
    }
  }

  function drawIndicators(newestFirst) {
    const rows = [];
    for (const r of newestFirst) {
      const time = parseTime(r.start);
      if (Number.isFinite(time)) rows.push(Object.assign({ time }, r));
    }
    rows.sort((a, b) => a.time - b.time);
    smaSeries.setData(rows.map((r) => pointOrGap(r.time, r.sma20)));
    ema8Series.setData(rows.map((r) => pointOrGap(r.time, r.ema8)));
    ema21Series.setData(rows.map((r) => pointOrGap(r.time, r.ema21)));
    rsiSeries.setData(rows.map((r) => pointOrGap(r.time, r.rsi14)));
    macdSeries.setData(rows.map((r) => pointOrGap(r.time, r.macd)));
    signalSeries.setData(rows.map((r) => pointOrGap(r.time, r.macd_signal)));
    histSeries.setData(rows.map((r) => {
      const p = pointOrGap(r.time, r.macd_histogram);
      if ("value" in p) p.color = p.value >= 0 ? "rgba(38, 166, 154, 0.6)" : "rgba(239, 83, 80, 0.6)";
      return p;
    }));
    drawn.indicators = rows;
    dash.indicators = rows.filter((r) => r.sma20 !== null || r.ema8 !== null || r.rsi14 !== null).length;
  }

  function clearChart() {
    for (const s of [candleSeries, smaSeries, ema8Series, ema21Series, rsiSeries, macdSeries, signalSeries, histSeries]) s.setData([]);
    drawn = { candles: [], indicators: [], digits: drawn.digits };
    dash.candles = 0;
    dash.indicators = 0;
    $("latest").textContent = "";
    showLegend();
  }

  // ---------------------------------------------------------------- symbols table and selection

  let symbols = []; // last /symbols list
  let lastFailure = null; // ApiError of the last failed refresh, null once one succeeds

  function selectSymbol(symbol, interval) {
    const iv = interval || dash.interval;
    if (symbol === dash.symbol && iv === dash.interval) return;
    dash.symbol = symbol;
    dash.interval = iv;
    try {
      const url = new URL(window.location.href);
      url.searchParams.set("symbol", symbol);
      url.searchParams.set("interval", iv);
      window.history.replaceState(null, "", url);
    } catch (e) {
      // Not essential: the address only remembers the choice.
    }
    clearChart();
    renderSelection();
    refreshNow();
  }

  function renderSelection() {
    const select = $("symbol-select");
    if (select.value !== dash.symbol) select.value = dash.symbol || "";
    const entry = symbols.find((s) => s.symbol === dash.symbol);
    const available = entry && Array.isArray(entry.intervals) ? entry.intervals : INTERVALS;
    for (const button of document.querySelectorAll(".intervals button")) {
      const iv = button.dataset.interval;
      button.setAttribute("aria-pressed", String(iv === dash.interval));
      button.disabled = !available.includes(iv);
    }
    for (const row of document.querySelectorAll("#symbols-table tbody tr")) {
      row.classList.toggle("selected", row.dataset.symbol === dash.symbol);
      row.setAttribute("aria-selected", String(row.dataset.symbol === dash.symbol));
    }
  }

  function renderSymbols() {
    const tbody = document.querySelector("#symbols-table tbody");
    const select = $("symbol-select");
    const rowsBySymbol = new Map([...tbody.querySelectorAll("tr")].map((r) => [r.dataset.symbol, r]));
    const known = new Set();
    for (const s of symbols) {
      known.add(s.symbol);
      let row = rowsBySymbol.get(s.symbol);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.symbol = s.symbol;
        row.tabIndex = 0;
        for (const cls of ["sym", "price num", "change num", "at", "updated num"]) {
          const td = document.createElement("td");
          td.className = cls;
          row.appendChild(td);
        }
        row.addEventListener("click", () => selectSymbol(s.symbol));
        row.addEventListener("keydown", (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            selectSymbol(s.symbol);
          }
        });
        tbody.appendChild(row);
      }
      const digits = precisionFor(s.price);
      const cells = row.children;
      const oldPrice = dash.prices[s.symbol];
      const age = ageOf(s.updated_at);
      const stale = !(age <= STALE_SECONDS);
      cells[0].textContent = s.symbol;
      cells[1].textContent = fmt(s.price, digits);
      const pct = Number.isFinite(s.change) && Number.isFinite(s.price) && s.price - s.change !== 0
        ? (s.change / (s.price - s.change)) * 100
        : null;
      cells[2].textContent = s.change === null || s.change === undefined
        ? "–"
        : `${fmtSigned(s.change, digits)}${pct === null ? "" : ` (${fmtSigned(pct, 2)}%)`}`;
      cells[2].classList.toggle("up", s.change > 0);
      cells[2].classList.toggle("down", s.change < 0);
      const [date, clock] = fmtTimeUtc(s.at).split(" ");
      const dateSpan = document.createElement("span");
      dateSpan.className = "date";
      dateSpan.textContent = date;
      cells[3].replaceChildren(dateSpan, document.createTextNode(clock || ""));
      cells[4].textContent = fmtAge(age);
      if (stale) {
        const badge = document.createElement("span");
        badge.className = "badge stale";
        badge.textContent = "stale";
        badge.title = `stored more than ${STALE_SECONDS} s ago`;
        cells[4].prepend(badge);
      }
      row.classList.toggle("is-stale", stale);
      if (oldPrice !== undefined && oldPrice !== s.price) {
        row.classList.remove("flash-up", "flash-down");
        void row.offsetWidth; // restart the animation
        row.classList.add(s.price > oldPrice ? "flash-up" : "flash-down");
      }
      dash.prices[s.symbol] = s.price;
      dash.changes[s.symbol] = s.change;
    }
    for (const [symbol, row] of rowsBySymbol) {
      if (!known.has(symbol)) {
        row.remove();
        delete dash.prices[symbol];
        delete dash.changes[symbol];
      }
    }
    // The chooser lists the same symbols in the same order.
    const options = [...select.options].map((o) => o.value).join("\n");
    if (options !== symbols.map((s) => s.symbol).join("\n")) {
      select.replaceChildren(...symbols.map((s) => new Option(s.symbol, s.symbol)));
    }
    renderSelection();
  }

  $("symbol-select").addEventListener("change", (e) => selectSymbol(e.target.value));
  for (const button of document.querySelectorAll(".intervals button")) {
    button.addEventListener("click", () => dash.symbol && selectSymbol(dash.symbol, button.dataset.interval));
  }

  function renderLatest(latest) {
    if (!latest || latest.symbol !== dash.symbol) return;
    const d = precisionFor(latest.price);
    const parts = [`${fmt(latest.price, d)}`];
    if (latest.source === "tick") parts.push(`bid ${fmt(latest.bid, d)} ask ${fmt(latest.ask, d)}`);
    else if (latest.volume !== null && latest.volume !== undefined) parts.push(`vol ${latest.volume}`);
    parts.push(`at ${fmtTimeUtc(latest.at)} UTC`);
    $("latest").textContent = parts.join(" · ");
  }

  // ---------------------------------------------------------------- usage lookup

  // The lookup's credentials live here only: never in storage, cookies or the address.
  let usageQuery = null; // { url, authorization, cacheKey }
  const usageCharts = {};
  const USAGE_COLORS = {
    video: "#42a5f5",
    audio: "#ab47bc",
    image: "#26a69a",
    text: "#ffca28",
    application: "#ef5350",
    voice: "#66bb6a",
    "video call": "#29b6f6",
  };
  const FALLBACK_COLORS = ["#8d6e63", "#78909c", "#d4e157", "#ec407a"];

  function usageChart(kind) {
    if (!usageCharts[kind]) {
      const formatter = kind === "data" ? fmtBytes : fmtSeconds;
      const axis = kind === "data" ? fmtBytes : fmtSecondsAxis;
      const options = baseOptions();
      options.localization = { priceFormatter: axis };
      options.rightPriceScale.scaleMargins = { top: 0.1, bottom: 0 };
      // The price chart above carries the TradingView logo and the footer its notice and link; here
      // the logo would cover the first bars.
      options.layout.attributionLogo = false;
      const chart = LC.createChart($(kind === "data" ? "usage-data-chart" : "usage-call-chart"), options);
      usageCharts[kind] = { chart, series: [], formatter, axis };
      chart.subscribeCrosshairMove((param) => showUsageLegend(kind, param && param.time));
    }
    return usageCharts[kind];
  }

  // usage lines of one category -> { types (largest total first), times, totals[type][time] }
  function stackUsage(lines) {
    const byType = new Map();
    const times = new Set();
    for (const l of lines) {
      const time = parseTime(l.start_time);
      if (!Number.isFinite(time) || !Number.isFinite(l.total)) continue;
      times.add(time);
      if (!byType.has(l.usage_type)) byType.set(l.usage_type, { type: l.usage_type, sum: 0, at: new Map() });
      const t = byType.get(l.usage_type);
      t.sum += l.total;
      t.at.set(time, (t.at.get(time) || 0) + l.total);
    }
    const types = [...byType.values()].sort((a, b) => b.sum - a.sum || a.type.localeCompare(b.type));
    return { types, times: [...times].sort((a, b) => a - b) };
  }

  const usageDrawn = { data: null, call: null };

  function drawUsageCategory(kind, lines, message) {
    const holder = usageChart(kind);
    for (const s of holder.series) holder.chart.removeSeries(s);
    holder.series = [];
    const stack = stackUsage(lines);
    usageDrawn[kind] = stack;
    // Cumulative sums, bottom = the largest type. Drawn from the tallest (all types) down to the
    // bottom one, so each later, shorter series covers the lower part of the one before it.
    const cumulative = stack.types.map(() => []);
    for (const time of stack.times) {
      let sum = 0;
      stack.types.forEach((t, i) => {
        sum += t.at.get(time) || 0;
        cumulative[i].push({ time, value: sum });
      });
    }
    const legend = $(kind === "data" ? "usage-data-legend" : "usage-call-legend");
    legend.replaceChildren();
    let fallback = 0;
    const colors = stack.types.map((t) => {
      const key = kind === "call" && t.type === "video" ? "video call" : t.type;
      return USAGE_COLORS[key] || FALLBACK_COLORS[fallback++ % FALLBACK_COLORS.length];
    });
    for (let i = stack.types.length - 1; i >= 0; i--) {
      const series = holder.chart.addSeries(LC.HistogramSeries, {
        color: colors[i],
        priceLineVisible: false,
        lastValueVisible: false,
        priceFormat: { type: "custom", formatter: holder.axis, minMove: 1 },
        base: 0,
      });
      series.setData(cumulative[i]);
      holder.series.push(series);
    }
    stack.types.forEach((t, i) => {
      const item = document.createElement("span");
      item.className = "swatch-item";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = colors[i];
      const label = document.createElement("span");
      label.dataset.type = t.type;
      label.textContent = `${t.type} ${holder.formatter(t.sum)}`;
      item.append(swatch, label);
      legend.appendChild(item);
    });
    if (!stack.types.length && message) {
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = message;
      legend.appendChild(none);
    }
    // A bar's width of room on either side, so the first day's label is not cut at the edge.
    holder.chart.timeScale().setVisibleLogicalRange({ from: -3, to: Math.max(stack.times.length, 1) + 0.5 });
    return lines.length;
  }

  function showUsageLegend(kind, time) {
    const stack = usageDrawn[kind];
    if (!stack) return;
    const legend = $(kind === "data" ? "usage-data-legend" : "usage-call-legend");
    const holder = usageCharts[kind];
    for (const label of legend.querySelectorAll("[data-type]")) {
      const t = stack.types.find((x) => x.type === label.dataset.type);
      if (!t) continue;
      const value = time === undefined ? t.sum : t.at.get(time) || 0;
      label.textContent = `${t.type} ${holder.formatter(value)}`;
    }
  }

  function drawUsage(body) {
    const lines = Array.isArray(body.usage) ? body.usage : [];
    const data = lines.filter((l) => l.category === "data");
    const calls = lines.filter((l) => l.category === "call");
    $("usage-charts").hidden = false; // before drawing, so the charts are created at their size
    drawUsageCategory("data", data, "none in this range");
    drawUsageCategory("call", calls, "none in this range");
    dash.usagePoints = data.length + calls.length;
    const summary = $("usage-summary");
    summary.hidden = false;
    summary.textContent = lines.length
      ? `${body.msisdn}: ${lines.length} usage buckets from ${body.start_time} to ${body.end_time} UTC (time axis in UTC)`
      : `${body.msisdn}: no usage from ${body.start_time} to ${body.end_time} UTC`;
  }

  function showUsageError(error) {
    const box = $("usage-error");
    for (const input of document.querySelectorAll(".usage-form input, .usage-form select")) input.removeAttribute("aria-invalid");
    if (!error) {
      box.hidden = true;
      box.textContent = "";
      dash.usageError = null;
      dash.usageStatus = null;
      return;
    }
    let message;
    if (error.status === 401) {
      message = "401 Unauthorized: wrong or missing username or password.";
      $("usage-password").setAttribute("aria-invalid", "true");
      $("usage-user").setAttribute("aria-invalid", "true");
    } else if (error.status === 400) {
      const parameter = error.body && error.body.parameter;
      message = `400 Bad request: ${(error.body && error.body.error) || "invalid parameter"}${parameter ? ` (parameter ${parameter})` : ""}`;
      const field = { msisdn: "usage-msisdn", start_time: "usage-start", end_time: "usage-end", granularity: "usage-granularity" }[parameter];
      if (field) $(field).setAttribute("aria-invalid", "true");
    } else if (error.status === 0) {
      message = `The API did not answer: ${error.message}`;
    } else {
      message = `${error.status} error: ${(error.body && error.body.error) || error.message}`;
    }
    box.textContent = message;
    box.hidden = false;
    dash.usageError = message;
    dash.usageStatus = error.status;
  }

  // "2024-01-01T00:00[:00]" -> "20240101000000" (the datetime input's value is taken as UTC).
  function compactTime(value) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value || "");
    if (!m) return value || "";
    return `${m[1]}${m[2]}${m[3]}${m[4]}${m[5]}${m[6] || "00"}`;
  }

  function basicAuthorization(user, password) {
    if (!user && !password) return null;
    const bytes = new TextEncoder().encode(`${user}:${password}`);
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return `Basic ${btoa(binary)}`;
  }

  async function runUsage(query) {
    const answer = await getJson(query.url, query.counter, query.authorization, query.cacheKey);
    if (query !== usageQuery) return; // a newer lookup replaced this one
    if (answer.changed || dash.usagePoints === 0) drawUsage(answer.body);
    return answer;
  }

  let usageSerial = 0;

  $("usage-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const msisdn = $("usage-msisdn").value.trim();
    const params = new URLSearchParams({
      msisdn,
      start_time: compactTime($("usage-start").value),
      end_time: compactTime($("usage-end").value),
    });
    if ($("usage-granularity").value === "day") params.set("granularity", "day");
    const authorization = basicAuthorization($("usage-user").value, $("usage-password").value);
    usageSerial++;
    const query = {
      url: `data_usage?${params}`,
      authorization,
      // One cached answer per URL and credentials, so a changed password is never answered from cache.
      cacheKey: `data_usage?${params}#${usageSerial}`,
      counter: dash.lookups,
    };
    if (usageQuery) lastAnswers.delete(usageQuery.cacheKey);
    usageQuery = query;
    query.pending = true;
    const button = $("usage-submit");
    button.disabled = true;
    button.textContent = "Looking up…";
    try {
      await runUsage(query);
      if (query === usageQuery) {
        showUsageError(null);
        query.counter = dash.refreshes; // later redraws are refreshes
      }
    } catch (error) {
      if (query === usageQuery) {
        usageQuery = null; // do not retry a refused lookup on every tick
        showUsageError(error);
        dash.usagePoints = 0;
        for (const kind of ["data", "call"]) if (usageCharts[kind]) drawUsageCategory(kind, [], "");
        $("usage-summary").hidden = true;
        $("usage-charts").hidden = true;
      }
    } finally {
      query.pending = false;
      button.disabled = false;
      button.textContent = "Look up";
    }
  });

  // ---------------------------------------------------------------- refresh loop

  let timer = null;
  let running = false;
  let again = false;
  let failures = 0;
  let generation = 0;

  function refreshNow() {
    generation++;
    if (running) {
      again = true;
      return;
    }
    if (timer) clearTimeout(timer);
    timer = null;
    refresh();
  }

  function schedule() {
    const delay = failures ? Math.min(MAX_BACKOFF_MS, REFRESH_MS * Math.pow(2, failures - 1)) : REFRESH_MS;
    if (timer) clearTimeout(timer);
    timer = setTimeout(refresh, delay);
    return delay;
  }

  // Market endpoints need no credentials unless the API is set to require them; once one answers
  // 401, the username and password typed in the usage form are sent with them too.
  let marketNeedsAuth = false;

  async function market(url) {
    const authorization = marketNeedsAuth ? basicAuthorization($("usage-user").value, $("usage-password").value) : null;
    try {
      return await getJson(url, dash.refreshes, authorization);
    } catch (e) {
      if (e.status === 401) {
        marketNeedsAuth = true;
        e.message += " (this API requires credentials for market data: enter its username and password in the usage form)";
      }
      throw e;
    }
  }

  // Every page of /symbols (each page its own conditional request).
  async function allSymbols() {
    const all = [];
    let url = "symbols";
    for (let page = 0; url && page < MAX_SYMBOL_PAGES; page++) {
      const answer = await market(url);
      if (Array.isArray(answer.body.symbols)) all.push(...answer.body.symbols);
      const token = answer.body.next_page_token;
      url = token ? `symbols?page_token=${encodeURIComponent(token)}` : null;
    }
    return all;
  }

  async function refresh() {
    running = true;
    timer = null;
    const errors = [];
    try {
      try {
        symbols = await allSymbols();
      } catch (e) {
        errors.push(e);
      }
      renderSymbols(); // also when unchanged: ages and staleness move with the clock
      if (!dash.symbol && symbols.length) {
        const wanted = new URLSearchParams(window.location.search);
        const fromUrl = symbols.find((s) => s.symbol === wanted.get("symbol"));
        const iv = INTERVALS.includes(wanted.get("interval")) ? wanted.get("interval") : "M1";
        dash.symbol = (fromUrl || symbols[0]).symbol;
        dash.interval = iv;
        renderSelection();
      }
      const tasks = [];
      if (dash.symbol) {
        const gen = generation;
        const q = `symbol=${encodeURIComponent(dash.symbol)}&interval=${dash.interval}&sort=desc&limit=${CHART_BARS}`;
        const symbol = dash.symbol;
        tasks.push(market(`candles?${q}`).then((a) => {
          if (gen === generation && (a.changed || dash.candles === 0)) drawCandles(a.body.candles || []);
        }));
        tasks.push(market(`indicators?${q}`).then((a) => {
          if (gen === generation && (a.changed || dash.indicators === 0)) drawIndicators(a.body.indicators || []);
        }));
        tasks.push(market(`latest_price?symbol=${encodeURIComponent(symbol)}`).then((a) => {
          if (gen === generation) renderLatest(a.body);
        }));
      }
      if (usageQuery && !usageQuery.pending) {
        const query = usageQuery;
        tasks.push(runUsage(query).catch((e) => {
          if (e.status === 401 && query === usageQuery) {
            usageQuery = null;
            showUsageError(e);
          }
          throw e;
        }));
      }
      for (const result of await Promise.allSettled(tasks)) {
        if (result.status === "rejected") errors.push(result.reason);
      }
      showLegend();
    } catch (e) {
      errors.push(e); // a bug in drawing must not stop the loop
    } finally {
      dash.ticks++;
      failures = errors.length ? failures + 1 : 0;
      lastFailure = errors.length ? errors[0] : null;
      if (!errors.length) dash.lastRefreshAt = new Date().toISOString();
      dash.lastError = lastFailure ? String(lastFailure.message || lastFailure) : null;
      running = false;
      if (again) {
        again = false;
        refresh();
      } else {
        const delay = schedule();
        renderStatus(errors, delay);
      }
    }
  }

  function renderStatus(errors, delay) {
    const entry = symbols.find((s) => s.symbol === dash.symbol);
    const age = entry ? ageOf(entry.updated_at) : NaN;
    const dataStale = entry ? !(age <= STALE_SECONDS) : false;
    dash.stale = dataStale || errors.length > 0;
    const badge = $("chart-stale");
    badge.hidden = !dash.stale;
    badge.textContent = errors.length ? "stale: refresh failed" : `stale: stored ${fmtAge(age)}`;
    badge.title = errors.length
      ? "The last refresh failed; the chart shows the last data received."
      : `The newest price of ${dash.symbol} was stored more than ${STALE_SECONDS} s ago.`;

    const status = $("status");
    status.replaceChildren();
    const r = dash.refreshes;
    const counts = document.createElement("span");
    counts.className = "counts";
    counts.textContent = `200 ×${r.ok} · 304 ×${r.notModified} · failed ×${r.failed}`;
    const when = document.createElement("span");
    if (errors.length) {
      status.classList.add("failing");
      const plural = errors.length > 1 ? ` (and ${errors.length - 1} more)` : "";
      when.className = "error-text";
      when.textContent = `Refresh failed: ${errors[0].message || errors[0]}${plural}. Showing the last data; retrying in ${Math.round(delay / 1000)} s.`;
    } else {
      status.classList.remove("failing");
      when.textContent = `Live, every ${REFRESH_MS / 1000} s · updated ${new Date().toISOString().slice(11, 19)} UTC`;
    }
    status.append(when, counts);
  }

  showLegend();
  refresh();
})();
