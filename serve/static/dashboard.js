// crypto-intel live dashboard: history over HTTP, then live updates over the WebSocket feed.
// Plain browser JS, no libraries: the page must work offline and from the API's own origin.
"use strict";

(() => {
  const API = "/api/v1";
  const KEY_STORE = "crypto-intel.key";
  const EMA_PERIOD = 20;
  const MAX_BOXES = 8;  // per family: dozens of open gaps stacked would hide the candles
  const MAX_SIGNALS = 200, HISTORY_SIGNALS = 100, MAX_ALERTS = 40, HISTORY = 300, SIGNAL_PAGES = 5;
  const COLORS = { bg: "#0f1419", grid: "#1f2830", text: "#7d8a96", up: "#26a69a", down: "#ef5350",
                   ema: "#f6c343", ob: "rgba(92,124,250,.12)", obLine: "rgba(92,124,250,.6)",
                   fvg: "rgba(174,62,201,.10)", fvgLine: "rgba(174,62,201,.5)", swing: "#d6dde4", brk: "#ff922b" };
  const UNIT_NS = { s: 1e9, m: 60e9, h: 3600e9, d: 86400e9, w: 604800e9 };

  const $ = (id) => document.getElementById(id);
  const els = { market: $("market"), tf: $("timeframe"), status: $("status"), chart: $("chart"),
                signals: $("signals"), alerts: $("alerts"), error: $("error"), keyForm: $("key-form"), key: $("key"),
                loginForm: $("login-form"), username: $("username"), password: $("password"), who: $("who"),
                logout: $("logout") };
  const params = new URLSearchParams(location.search);

  // everything the page shows; also read by tests through window.dashboardState
  const state = window.dashboardState = {
    market: null, timeframe: els.tf.value, status: "connecting",
    candles: [], signals: [], alerts: [],
    structure: { swings: [], breaks: [], order_blocks: [], fair_value_gaps: [] },
    counts: { candles: 0, signals: 0, alerts: 0, messages: 0, lagged: 0, draws: 0, live_candles: 0, live_signals: 0 },
    auth: { mode: null, user: null, expires_at: 0, refreshes: 0 },  // never the tokens themselves
  };
  let ws = null, subscribed = [], lastSeq = {}, reconnectTimer = null, structureTimer = null, loadToken = 0;

  // -- API key: ?key= wins, then sessionStorage; removed from the address bar so it stays out of history
  function takeKey() {
    const fromUrl = params.get("key");
    if (fromUrl) {
      sessionStorage.setItem(KEY_STORE, fromUrl);
      params.delete("key");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
    }
    return sessionStorage.getItem(KEY_STORE);
  }
  let apiKey = takeKey();

  // -- login session: access and refresh token in this closure only (no storage: a reload logs in again);
  // the access token is refreshed before it expires, and once more if the API refuses it
  let session = null, refreshTimer = null;

  function credential() { return session ? session.access : apiKey; }

  function authHeaders() { return session ? { Authorization: `Bearer ${session.access}` } : { "X-API-Key": apiKey }; }

  async function post(path, body, headers = {}) {
    const res = await fetch(API + path, { method: "POST", headers: { "Content-Type": "application/json", ...headers },
                                          body: JSON.stringify(body || {}) });
    const out = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((out.error && out.error.message) || `HTTP ${res.status}`);
    return out.item;
  }

  function keepSession(pair, user) {
    session = { access: pair.access_token, refresh: pair.refresh_token, user };
    Object.assign(state.auth, { mode: "session", user, expires_at: Date.now() + pair.expires_in * 1000 });
    clearTimeout(refreshTimer);
    // at 80% of its life, at least 5 s before the end
    const inMs = Math.max(1000, Math.min(pair.expires_in * 800, (pair.expires_in - 5) * 1000));
    refreshTimer = setTimeout(() => refresh().catch(() => {}), inMs);
  }

  let refreshing = null;
  function refresh() {
    if (!session) return Promise.reject(new Error("not logged in"));
    // one refresh at a time: a refresh token works once, a second use would end the session
    refreshing = refreshing || post("/auth/refresh", { refresh_token: session.refresh })
      .then((pair) => { keepSession(pair, session.user); state.auth.refreshes++; })
      .catch((e) => { endSession(`session ended: ${e.message}; log in again`); throw e; })
      .finally(() => { refreshing = null; });
    return refreshing;
  }

  function endSession(message) {
    clearTimeout(refreshTimer);
    session = null;
    Object.assign(state.auth, { mode: null, user: null, expires_at: 0 });
    if (ws) { const old = ws; ws = null; old.close(); }
    setStatus("closed");
    showForms(message);
  }

  function showForms(message) {
    els.loginForm.hidden = false; els.keyForm.hidden = false;
    els.logout.hidden = true; els.who.hidden = true;
    showError(message || "log in, or enter an API key");
  }

  function signedIn(label) {
    els.loginForm.hidden = true; els.keyForm.hidden = true;
    els.who.textContent = label; els.who.hidden = false; els.logout.hidden = false;
  }

  function feedUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(params.get("ws") || `${scheme}//${location.hostname}:8001/ws/v1/feed`);
    url.searchParams.set("key", credential());  // browsers cannot set headers on a WebSocket
    return url.toString();
  }

  async function api(path, retried = false) {
    const res = await fetch(API + path, { headers: authHeaders() });
    const body = await res.json().catch(() => ({}));
    if (res.status === 401 && session && !retried) {  // expired early (clock, sleep): refresh once, then retry
      await refresh();
      return api(path, true);
    }
    if (!res.ok) throw new Error((body.error && body.error.message) || `HTTP ${res.status}`);
    return body;
  }

  function showError(message) { els.error.textContent = message || ""; }

  function setStatus(s) {
    state.status = s;
    els.status.dataset.status = s;
    els.status.textContent = s;
  }

  // -- data -------------------------------------------------------------------------------------------

  const tfNs = (tf) => Number(tf.slice(0, -1)) * (UNIT_NS[tf.slice(-1)] || 60e9);

  function upsertCandle(c, replace = true) {
    // the forming candle arrives again and again with the same open_ts: replace it, never duplicate
    const list = state.candles;
    let i = list.length - 1;
    while (i >= 0 && list[i].open_ts > c.open_ts) i--;
    if (i >= 0 && list[i].open_ts === c.open_ts) { if (replace) list[i] = c; }
    else list.splice(i + 1, 0, c);
    if (list.length > HISTORY * 2) list.splice(0, list.length - HISTORY * 2);
    state.counts.candles = list.length;
  }

  function addSignal(s) {
    if (state.signals.some((x) => x.id === s.id)) return;  // delivery is at-least-once
    state.signals.push(s);
    if (state.signals.length > MAX_SIGNALS) state.signals.shift();
    renderSignal(s);
  }

  function addAlert(a) {
    if (a.id && state.alerts.some((x) => x.id === a.id)) return;
    state.alerts.push(a);
    if (state.alerts.length > MAX_ALERTS) state.alerts.shift();
    renderAlerts();
  }

  async function loadMarkets() {
    const { items } = await api("/markets");
    els.market.replaceChildren(...items.map((m) => new Option(m.market, m.market)));
    const wanted = params.get("market");
    if (wanted && items.some((m) => m.market === wanted)) els.market.value = wanted;
  }

  async function loadStructure() {
    const token = loadToken, m = encodeURIComponent(state.market);
    try {
      const { item } = await api(`/markets/${m}/structure?tf=${state.timeframe}`);
      if (token !== loadToken) return;
      state.structure = item;
      draw();
    } catch (e) { showError(`structure: ${e.message}`); }
  }

  // the selection changes: forget the old market's data at once, so late answers cannot mix in
  function select() {
    ++loadToken;
    state.market = els.market.value;
    state.timeframe = els.tf.value;
    state.candles = []; state.signals = [];
    state.structure = { swings: [], breaks: [], order_blocks: [], fair_value_gaps: [] };
    state.counts.candles = 0; state.counts.signals = 0;
    els.chart.dataset.candles = "0";
    els.signals.replaceChildren();
  }

  // the latest signals since ``sinceNs``: the API pages oldest first, so walk a few pages and keep the tail
  async function latestSignals(m, sinceNs) {
    let rows = [], cursor = null;
    for (let page = 0; page < SIGNAL_PAGES; page++) {
      const q = `/signals?market=${m}&limit=${MAX_SIGNALS}&since=${sinceNs}` + (cursor ? `&cursor=${cursor}` : "");
      const body = await api(q);
      rows = rows.concat(body.items).slice(-HISTORY_SIGNALS);
      if (!(cursor = body.next_cursor)) break;
    }
    return rows;
  }

  // history for the selection; an answer to an older selection is dropped
  async function loadHistory() {
    const token = loadToken, m = encodeURIComponent(state.market);
    const candles = (await api(`/markets/${m}/candles?tf=${state.timeframe}&limit=${HISTORY}`)).items;
    if (token !== loadToken) return;
    // newest first from the API; a candle that came live meanwhile is newer than its history row
    candles.slice().reverse().forEach((c) => upsertCandle(c, false));
    draw();  // candles first; signals and the structure overlay follow
    const since = candles.length ? candles[candles.length - 1].open_ts : 0;
    const [signals] = await Promise.all([latestSignals(m, since), loadStructure()]);
    if (token !== loadToken) return;
    signals.forEach(addSignal);
  }

  async function loadAlerts() {
    try { (await api("/alerts?limit=20")).items.forEach(addAlert); } catch (e) { showError(`alerts: ${e.message}`); }
  }

  // -- live feed --------------------------------------------------------------------------------------

  function channels() {
    return [`candles:${state.market}:${state.timeframe}`, `signals:${state.market}`,
            `structure:${state.market}:${state.timeframe}`, "alerts"];
  }

  function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }

  function resubscribe() {
    const next = channels();
    const gone = subscribed.filter((c) => !next.includes(c));
    if (gone.length) send({ op: "unsubscribe", channels: gone });
    // resume where this page left off on a reconnect, so nothing published meanwhile is missed
    const from = {};
    next.forEach((c) => { if (lastSeq[c]) from[c] = lastSeq[c]; });
    send({ op: "subscribe", channels: next, ...(Object.keys(from).length ? { from } : {}) });
    subscribed = next;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    setStatus("connecting");
    let sock;
    try { sock = ws = new WebSocket(feedUrl()); } catch (e) { showError(`feed: ${e.message}`); setStatus("closed"); return; }
    sock.onopen = () => { subscribed = []; resubscribe(); };
    sock.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      setStatus("closed");
      if (ev.code === 4401 && session) { refresh().then(connect, () => {}); return; }
      if (ev.code === 4401) { showError("feed: the API key was refused"); return; }
      reconnectTimer = setTimeout(connect, 2000);
    };
  }

  function onMessage(msg) {
    state.counts.messages++;
    switch (msg.op) {
      case "subscribed": setStatus("live"); break;
      case "lagged": state.counts.lagged++; setStatus("lagged"); lastSeq[msg.channel] = msg.skipped_to; break;
      case "error": showError(`feed: ${msg.message}`); break;
      case "data": onData(msg); break;
      default: break;  // heartbeat, pong, unsubscribed
    }
  }

  function onData(msg) {
    if (!subscribed.includes(msg.channel)) return;  // late data of a channel just left
    lastSeq[msg.channel] = msg.seq;
    if (state.status !== "live") setStatus("live");
    const rec = msg.data, kind = msg.channel.split(":")[0];
    if (kind === "candles") { state.counts.live_candles++; upsertCandle(rec); draw(); }
    else if (kind === "signals") { state.counts.live_signals++; addSignal(rec); }
    else if (kind === "alerts") addAlert(rec);
    else if (kind === "structure") {
      // the picture (what is still open) is folded server-side: refetch it once a burst of events settles
      clearTimeout(structureTimer);
      structureTimer = setTimeout(loadStructure, 300);
    }
  }

  // -- rendering --------------------------------------------------------------------------------------

  const fmt = (p) => (p == null ? "–" : Math.abs(p) >= 100 ? p.toFixed(2) : Number(p).toPrecision(5));
  const num = (v) => (v == null ? "–" : Number(v).toFixed(2));
  const timeOf = (ns) => (typeof ns === "number" ? new Date(ns / 1e6).toISOString().slice(5, 16).replace("T", " ") : String(ns || ""));

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;  // never innerHTML: records are data, not markup
    return e;
  }

  function renderSignal(s) {
    const li = el("li", `signal ${s.side || ""}`);
    li.dataset.id = s.id;
    li.append(el("div", "head", `${(s.side || "").toUpperCase()} ${s.kind || ""} @ ${fmt(s.price)}`),
              el("div", "meta", `strength ${num(s.strength)} · risk ${num(s.risk_score)} · stop ${fmt(s.stop)}` +
                 ` · ${s.timeframe || ""} ${timeOf(s.ts)}`),
              el("div", "reasons", (s.reasons || []).join("; ")));
    els.signals.prepend(li);  // newest on top
    while (els.signals.children.length > MAX_SIGNALS) els.signals.lastChild.remove();
    state.counts.signals = els.signals.children.length;
  }

  function renderAlerts() {
    els.alerts.replaceChildren(...state.alerts.slice().reverse().map((a) =>
      el("li", a.kind === "whale" ? "alert whale" : "alert",
         `${a.severity ? a.severity + " " : ""}${a.kind || "alert"}: ${a.message || a.market || ""}`)));
    state.counts.alerts = state.alerts.length;
  }

  function ema(values, period) {
    const k = 2 / (period + 1), out = [];
    let prev = null;
    values.forEach((v, i) => {
      if (v == null) { out.push(prev); return; }
      prev = prev == null ? v : v * k + prev * (1 - k);
      out.push(i >= period - 1 ? prev : null);  // no line during warm-up
    });
    return out;
  }

  function draw() {
    const cv = els.chart, ctx = cv.getContext("2d");
    const W = cv.width, H = cv.height, pad = { l: 8, r: 70, t: 12, b: 22 };
    ctx.fillStyle = COLORS.bg; ctx.fillRect(0, 0, W, H);
    const step = 8, fit = Math.floor((W - pad.l - pad.r) / step);
    const all = state.candles.filter((c) => c.open != null && c.close != null);  // gap candles carry nulls
    const shown = all.slice(-fit);
    ctx.font = "11px system-ui, sans-serif";
    // set on every draw, so tests that read it know the canvas shows these candles
    els.chart.dataset.candles = String(state.candles.length);
    if (!shown.length) {
      ctx.fillStyle = COLORS.text; ctx.fillText("no candles", W / 2 - 30, H / 2);
      return;
    }
    const span = tfNs(state.timeframe), t0 = shown[0].open_ts;
    let lo = Math.min(...shown.map((c) => c.low)), hi = Math.max(...shown.map((c) => c.high));
    const m = (hi - lo) * 0.08 || hi * 0.01 || 1; lo -= m; hi += m;
    const x = (ts) => pad.l + ((ts - t0) / span) * step + step / 2;
    const y = (p) => pad.t + (hi - p) / (hi - lo) * (H - pad.t - pad.b);
    const right = W - pad.r;

    // grid and price axis
    ctx.strokeStyle = COLORS.grid; ctx.fillStyle = COLORS.text; ctx.lineWidth = 1;
    for (let i = 0; i <= 5; i++) {
      const p = lo + (hi - lo) * i / 5, yy = Math.round(y(p)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(right, yy); ctx.stroke();
      ctx.fillText(fmt(p), right + 4, yy + 4);
    }
    ctx.fillText(timeOf(shown[0].open_ts), pad.l, H - 6);
    ctx.fillText(timeOf(shown[shown.length - 1].open_ts), right - 70, H - 6);

    ctx.save();
    ctx.beginPath(); ctx.rect(pad.l, pad.t, right - pad.l, H - pad.t - pad.b); ctx.clip();

    // order blocks and fair value gaps: from where they formed to the right edge (still open)
    const box = (o, fill, line) => {
      const meta = o.meta || {}, top = meta.top, bottom = meta.bottom;
      if (top == null || bottom == null) return;
      if (bottom > hi || top < lo) return;  // entirely off the visible price range
      const x0 = Math.max(pad.l, x(o.ts)), y0 = y(top), y1 = y(bottom);
      ctx.fillStyle = fill; ctx.fillRect(x0, y0, right - x0, y1 - y0);
      ctx.strokeStyle = line; ctx.strokeRect(x0, y0, right - x0, y1 - y0);
    };
    const st = state.structure || {};
    (st.order_blocks || []).slice(-MAX_BOXES).forEach((o) => box(o, COLORS.ob, COLORS.obLine));
    (st.fair_value_gaps || []).slice(-MAX_BOXES).forEach((o) => box(o, COLORS.fvg, COLORS.fvgLine));

    // candles
    shown.forEach((c) => {
      const xx = Math.round(x(c.open_ts)), up = c.close >= c.open;
      ctx.strokeStyle = ctx.fillStyle = up ? COLORS.up : COLORS.down;
      ctx.beginPath(); ctx.moveTo(xx + 0.5, y(c.high)); ctx.lineTo(xx + 0.5, y(c.low)); ctx.stroke();
      const yo = y(c.open), yc = y(c.close);
      ctx.fillRect(xx - step / 2 + 1.5, Math.min(yo, yc), step - 2, Math.max(1, Math.abs(yc - yo)));
    });

    // EMA over all loaded candles, so the visible part is past its warm-up
    const line = ema(all.map((c) => c.close), EMA_PERIOD).slice(-shown.length);
    ctx.strokeStyle = COLORS.ema; ctx.lineWidth = 1.5; ctx.beginPath();
    let started = false;
    line.forEach((v, i) => {
      if (v == null) return;
      const px = x(shown[i].open_ts), py = y(v);
      if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; }
    });
    ctx.stroke(); ctx.lineWidth = 1;

    // swings: a triangle above a high, below a low
    (st.swings || []).forEach((s) => {
      if (s.price == null || s.ts < t0) return;
      const high = s.kind === "swing_high", px = x(s.ts), py = y(s.price) + (high ? -6 : 6);
      ctx.fillStyle = COLORS.swing; ctx.beginPath();
      ctx.moveTo(px - 4, py + (high ? -4 : 4)); ctx.lineTo(px + 4, py + (high ? -4 : 4)); ctx.lineTo(px, py);
      ctx.fill();
    });

    // breaks of structure: a dashed level from the break to the right edge, labelled BOS or CHoCH
    ctx.setLineDash([4, 3]);
    (st.breaks || []).forEach((b) => {
      if (b.price == null || b.ts < t0) return;
      const px = x(b.ts), py = y(b.price);
      ctx.strokeStyle = ctx.fillStyle = COLORS.brk;
      ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(Math.min(right, px + 60), py); ctx.stroke();
      ctx.fillText(b.kind.startsWith("choch") ? "CHoCH" : "BOS", px + 2, py - 3);
    });
    ctx.setLineDash([]);
    ctx.restore();
    state.counts.draws++;
  }

  // -- wiring -----------------------------------------------------------------------------------------

  async function start() {
    showError("");
    try {
      await loadMarkets();
      if (!els.market.value) { showError("no markets yet"); return; }
      select();
      await loadHistory();
      await loadAlerts();
    } catch (e) {
      showError(e.message);
      return;
    }
    connect();
  }

  async function reselect() {
    select();
    resubscribe();  // live data for the new selection may arrive before its history: both merge by key
    try { await loadHistory(); } catch (e) { showError(e.message); }
  }

  els.market.addEventListener("change", reselect);
  els.tf.addEventListener("change", reselect);
  els.keyForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    apiKey = els.key.value.trim();
    els.key.value = "";
    if (!apiKey) return;
    sessionStorage.setItem(KEY_STORE, apiKey);
    state.auth.mode = "key";
    signedIn("API key");
    start();
  });
  els.loginForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = els.username.value.trim(), password = els.password.value;
    els.password.value = "";
    try {
      keepSession(await post("/auth/login", { username: user, password }), user);
    } catch (e) { showError(`login: ${e.message}`); return; }
    signedIn(user);
    start();
  });
  els.logout.addEventListener("click", async () => {
    if (session) {
      const { access, refresh: token } = session;
      endSession("logged out");
      try { await post("/auth/logout", { refresh_token: token }, { Authorization: `Bearer ${access}` }); }
      catch (e) { showError(`logout: ${e.message}`); }
    } else {
      apiKey = null;
      sessionStorage.removeItem(KEY_STORE);
      state.auth.mode = null;
      if (ws) { const old = ws; ws = null; old.close(); }
      setStatus("closed");
      showForms("API key forgotten");
    }
  });
  window.dashboardSession = { refresh };  // lets a test (or the console) refresh now

  if (apiKey) { state.auth.mode = "key"; signedIn("API key"); start(); }
  else { setStatus("closed"); showForms(); }
})();
