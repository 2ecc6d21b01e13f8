/* dse serve: the search page. Vanilla JS, no dependencies.
 *
 * Server text (file names, snippets, tokens, errors) only ever reaches the page through
 * textContent / DOM nodes, never innerHTML.
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "dse.token";
  const DEFAULT_K = "12";
  const MODE_LABELS = { visual: "Visual", text: "Text (BM25)", hybrid: "Hybrid" };
  const DONE_STATES = new Set(["done", "failed"]);

  const state = {
    index: null, // GET /v1/index
    hits: [], // the results on screen
    query: "", // the query of the results on screen
    current: -1, // the hit open in the viewer
    searchSeq: 0,
    searchAbort: null,
    tokensFor: null, // the query whose tokens fill the token selector
    explainSeq: 0,
    explainCache: new Map(), // "page|query|token" -> object URL
  };

  // ---------------------------------------------------------------- helpers

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function basename(path) {
    const text = String(path || "");
    const clean = text.split(/[?#]/)[0].replace(/\/+$/, "");
    return clean.slice(clean.lastIndexOf("/") + 1) || text;
  }

  function formatScore(score) {
    if (typeof score !== "number" || !Number.isFinite(score)) return "–";
    if (Math.abs(score) >= 100) return score.toFixed(1);
    return String(Number(score.toPrecision(3)));
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  const OCR_TITLE = "The page had no usable text layer: this text was read from its image by OCR (tesseract)";

  /** True if the hit's text was read by OCR (its metadata says text_source: "ocr"). */
  function fromOcr(hit) {
    return Boolean(hit && hit.metadata && hit.metadata.text_source === "ocr");
  }

  function withParam(url, key, value) {
    return url + (url.includes("?") ? "&" : "?") + `${key}=${encodeURIComponent(value)}`;
  }

  /** The snippet as text with <mark> around the [start, end) code-point ranges. */
  function highlighted(text, ranges) {
    const frag = document.createDocumentFragment();
    if (!text) return frag;
    const chars = Array.from(String(text)); // code points, as the server counts them
    const spans = (Array.isArray(ranges) ? ranges : [])
      .filter((r) => Array.isArray(r) && r.length >= 2)
      .map(([a, b]) => [Math.max(0, Math.trunc(a)), Math.min(chars.length, Math.trunc(b))])
      .filter(([a, b]) => b > a)
      .sort((x, y) => x[0] - y[0]);
    let pos = 0;
    for (const [a, b] of spans) {
      const start = Math.max(a, pos);
      if (b <= start) continue;
      if (start > pos) frag.append(chars.slice(pos, start).join(""));
      frag.append(el("mark", {}, chars.slice(start, b).join("")));
      pos = b;
    }
    if (pos < chars.length) frag.append(chars.slice(pos).join(""));
    return frag;
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, title, detail) {
      super(detail ? `${title}: ${detail}` : title);
      this.status = status;
      this.title = title;
      this.detail = detail;
    }
  }

  function detailText(detail) {
    if (detail === undefined || detail === null) return "";
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
    return JSON.stringify(detail);
  }

  /** An ApiError from an RFC 9457 problem document (or whatever the body is). */
  function problemFrom(status, statusText, contentType, body) {
    let title = statusText || `HTTP ${status}`;
    let detail = "";
    if ((contentType || "").includes("json")) {
      try {
        const p = JSON.parse(body);
        title = p.title || title;
        detail = detailText(p.detail !== undefined ? p.detail : p.errors);
      } catch (e) {
        detail = body.slice(0, 300);
      }
    } else if (body) {
      detail = body.slice(0, 300);
    }
    return new ApiError(status, `${title} (${status})`, detail);
  }

  async function api(path, { method = "GET", json, auth = false, signal } = {}) {
    const headers = { Accept: "application/json, application/problem+json, */*" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    if (auth && getToken()) headers.Authorization = `Bearer ${getToken()}`;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body, signal });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "Cannot reach the server", String(e.message || e));
    }
    if (!resp.ok) {
      const text = await resp.text().catch(() => "");
      throw problemFrom(resp.status, resp.statusText, resp.headers.get("content-type"), text);
    }
    return resp;
  }

  // ---------------------------------------------------------------- messages

  function showError(err, context) {
    const box = $("message");
    const title = err instanceof ApiError ? err.title : String((err && err.message) || err);
    const detail = err instanceof ApiError ? err.detail : "";
    box.replaceChildren(
      el("div", { class: "message-text" },
        el("strong", {}, context ? `${context}: ${title}` : title),
        detail ? el("span", { class: "message-detail" }, detail) : null),
      el("button", { type: "button", class: "ghost small", "aria-label": "Dismiss", onclick: clearMessage }, "✕"),
    );
    box.hidden = false;
  }

  function clearMessage() {
    const box = $("message");
    box.hidden = true;
    box.replaceChildren();
  }

  // ---------------------------------------------------------------- filters

  const CONDITION = /^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|!=|=|>|<|~)([\s\S]*)$/;
  const OPS = { "=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "~": "glob" };

  function unquote(raw) {
    if (raw.length >= 2 && raw[0] === raw[raw.length - 1] && (raw[0] === '"' || raw[0] === "'")) {
      return raw.slice(1, -1);
    }
    return null;
  }

  /** A value as `dse search --where` reads it: "quoted" -> string, true/false, numbers. */
  function parseValue(raw) {
    const quoted = unquote(raw);
    if (quoted !== null) return quoted;
    if (raw === "true" || raw === "false") return raw === "true";
    if (/^[+-]?\d+$/.test(raw) || /^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$/.test(raw)) return Number(raw);
    return raw;
  }

  /** Split on commas outside quotes. */
  function splitConditions(text) {
    const parts = [];
    let cur = "";
    let quote = null;
    for (const ch of text) {
      if (quote) {
        if (ch === quote) quote = null;
        cur += ch;
      } else if (ch === '"' || ch === "'") {
        quote = ch;
        cur += ch;
      } else if (ch === "," || ch === ";" || ch === "\n") {
        parts.push(cur);
        cur = "";
      } else {
        cur += ch;
      }
    }
    parts.push(cur);
    return parts.map((p) => p.trim()).filter(Boolean);
  }

  /** `kind=pdf, page>=2` -> {"kind": {"eq": "pdf"}, "page": {"gte": 2}} (throws on bad input). */
  function parseWhere(text) {
    const where = {};
    for (const part of splitConditions(text || "")) {
      const m = CONDITION.exec(part);
      if (!m) {
        throw new ApiError(0, "Bad filter",
          `"${part}": expected KEY OP VALUE with OP one of =, !=, >, >=, <, <=, ~ (e.g. kind=pdf)`);
      }
      const [, key, symbol, rawValue] = m;
      const raw = rawValue.trim();
      let op = OPS[symbol];
      let value;
      if (op === "glob") {
        const quoted = unquote(raw);
        value = quoted === null ? raw : quoted;
      } else if ((op === "eq" || op === "ne") && raw.includes("|") && unquote(raw) === null) {
        op = op === "eq" ? "in" : "not_in";
        value = raw.split("|").map((v) => parseValue(v.trim()));
      } else {
        value = parseValue(raw);
      }
      const ops = (where[key] = where[key] || {});
      if (op in ops) throw new ApiError(0, "Bad filter", `"${part}": ${key} already has a ${symbol} condition`);
      ops[op] = value;
    }
    return where;
  }

  // ---------------------------------------------------------------- the index

  async function loadIndex() {
    let info;
    try {
      info = await (await api("/v1/index")).json();
    } catch (e) {
      $("index-info").textContent = "Index unavailable";
      showError(e, "Cannot read the index");
      return false;
    }
    state.index = info;
    const modes = Array.isArray(info.modes) && info.modes.length ? info.modes : [info.default_mode || "visual"];
    const select = $("mode");
    select.replaceChildren(...modes.map((m) => el("option", { value: m }, MODE_LABELS[m] || m)));
    select.value = modes.includes(info.default_mode) ? info.default_mode : modes[0];
    const rewriters = Array.isArray(info.rewriters) ? info.rewriters : [];
    const rewrite = $("rewrite");
    rewrite.replaceChildren(el("option", { value: "" }, "No rewrite"),
      ...rewriters.map((name) => el("option", { value: name }, `Rewrite: ${name}`)));
    rewrite.hidden = !rewriters.length; // shown only when the server offers rewriters (dse serve --rewrite)
    if (Number.isInteger(info.max_k) && info.max_k > 0) {
      for (const option of Array.from($("k").options)) {
        if (Number(option.value) > info.max_k && option.value !== DEFAULT_K) option.remove();
      }
    }
    renderIndexInfo();
    renderFields(info.metadata_fields || []);
    $("upload-toggle").hidden = !info.writable;
    if (info.writable) renderUploadState();
    else $("upload").hidden = true;
    return true;
  }

  function renderIndexInfo() {
    const info = state.index;
    if (!info) return;
    const encoder = (info.manifest && info.manifest.encoder) || {};
    const kinds = { single: "single-vector", multi: "multi-vector", text: "BM25" };
    const parts = [plural(info.pages || 0, "page"), plural(info.sources || 0, "source")];
    const model = encoder.name || kinds[info.kind] || info.kind;
    const kind = kinds[info.kind];
    if (model) parts.push(kind && model.toLowerCase() !== kind.toLowerCase() ? `${model} (${kind})` : model);
    $("index-info").textContent = parts.join(" · ");
  }

  async function refreshIndex() {
    try {
      const info = await (await api("/v1/index")).json();
      state.index = Object.assign(state.index || {}, info);
      renderIndexInfo();
    } catch (e) {
      /* the counts stay as they were */
    }
  }

  function renderFields(fields) {
    const names = ["source", "page", "kind", ...fields].filter((f, i, all) => f && all.indexOf(f) === i);
    const box = $("field-list");
    box.replaceChildren("Fields: ", ...names.map((name) =>
      el("button", { type: "button", class: "chip", onclick: () => insertField(name) }, name)));
  }

  function insertField(name) {
    const input = $("where");
    const text = input.value.trim();
    input.value = (text ? `${text.replace(/,\s*$/, "")}, ` : "") + `${name}=`;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  // ---------------------------------------------------------------- URL state

  function formState() {
    return {
      q: $("q").value.trim(),
      mode: $("mode").value,
      rewrite: $("rewrite").value,
      where: $("where").value.trim(),
      k: $("k").value,
    };
  }

  function urlState() {
    const p = new URLSearchParams(location.search);
    return { q: (p.get("q") || "").trim(), mode: p.get("mode") || "", rewrite: p.get("rewrite") || "",
      where: p.get("where") || "", k: p.get("k") || "" };
  }

  function urlFor(s) {
    const p = new URLSearchParams();
    if (s.q) p.set("q", s.q);
    if (s.mode) p.set("mode", s.mode);
    if (s.rewrite) p.set("rewrite", s.rewrite);
    if (s.where) p.set("where", s.where);
    if (s.k && s.k !== DEFAULT_K) p.set("k", s.k);
    const qs = p.toString();
    return qs ? `/?${qs}` : "/";
  }

  function applyState(s) {
    $("q").value = s.q;
    const modes = Array.from($("mode").options, (o) => o.value);
    if (s.mode && modes.includes(s.mode)) $("mode").value = s.mode;
    else if (state.index) $("mode").value = modes.includes(state.index.default_mode) ? state.index.default_mode : modes[0];
    const rewriters = Array.from($("rewrite").options, (o) => o.value);
    $("rewrite").value = s.rewrite && rewriters.includes(s.rewrite) ? s.rewrite : "";
    $("where").value = s.where;
    if (s.where) $("filters").open = true;
    const ks = Array.from($("k").options, (o) => o.value);
    if (s.k && !ks.includes(s.k) && /^\d+$/.test(s.k)) $("k").append(el("option", {}, s.k));
    $("k").value = s.k && /^\d+$/.test(s.k) ? s.k : DEFAULT_K;
  }

  // ---------------------------------------------------------------- search

  async function runSearch() {
    const s = formState();
    const seq = ++state.searchSeq;
    if (state.searchAbort) state.searchAbort.abort();
    if (!s.q) {
      showResults(null, []);
      return;
    }
    let where;
    try {
      where = parseWhere(s.where);
    } catch (e) {
      showError(e);
      $("where").focus();
      return;
    }
    const body = { query: s.q, k: Number(s.k) || Number(DEFAULT_K) };
    if (s.mode) body.mode = s.mode;
    if (s.rewrite) body.rewrite = s.rewrite;
    if (Object.keys(where).length) body.where = where;
    const abort = new AbortController();
    state.searchAbort = abort;
    const grid = $("results");
    grid.setAttribute("aria-busy", "true");
    document.body.classList.add("busy");
    $("status").textContent = "Searching…";
    document.title = `${s.q} · dse`;
    try {
      const data = await (await api("/v1/search", { method: "POST", json: body, signal: abort.signal })).json();
      if (seq !== state.searchSeq) return;
      clearMessage();
      showResults(data, data.hits || [], s);
    } catch (e) {
      if (e.name === "AbortError" || seq !== state.searchSeq) return;
      showResults(null, []);
      showError(e, "Search failed");
    } finally {
      if (seq === state.searchSeq) {
        grid.removeAttribute("aria-busy");
        document.body.classList.remove("busy");
      }
    }
  }

  function showResults(data, hits, s) {
    state.hits = hits;
    state.query = data ? data.query || (s && s.q) || "" : "";
    if (state.tokensFor !== state.query) clearExplainCache();
    $("results").replaceChildren(...hits.map(card));
    const status = $("status");
    if (!data) {
      status.textContent = "";
      document.title = "dse search";
    } else if (!hits.length) {
      status.textContent = `No pages match “${state.query}”` + (s && s.where ? " with these filters." : ".");
    } else {
      const mode = MODE_LABELS[data.mode] || data.mode || "";
      const took = typeof data.took_ms === "number" ? ` in ${Math.round(data.took_ms)} ms` : "";
      status.textContent = `${plural(hits.length, "page")} for “${state.query}” · ${mode}${took}`;
    }
    const searched = data && rewrittenText(data);
    if (searched) {
      const rewriter = (data.rewritten && data.rewritten.rewriter) || (data.rewrite && data.rewrite.rewriter) || "";
      const terms = data.rewritten && Array.isArray(data.rewritten.terms) ? data.rewritten.terms : [];
      const span = el("span", { id: "rewritten" }, `searched as “${searched}” (${rewriter})`);
      // every term and its weight on hover: the line shows the query's terms and the heaviest few added
      if (terms.length) span.title = terms.map((t) => `${t.term} ${t.original ? "(query) " : ""}${t.weight}`).join("\n");
      status.append(" · ", span);
    }
  }

  // The rewrite as a person reads it: the server's `rewritten.text` (distinct terms, the query's
  // first, the expansion's with weights); an older server's raw `rewrite.text` otherwise.
  function rewrittenText(data) {
    if (data.rewritten && typeof data.rewritten.text === "string" && data.rewritten.text) return data.rewritten.text;
    return data.rewrite && data.rewrite.text ? data.rewrite.text : "";
  }

  function card(hit, i) {
    const name = hit.source_name || basename(hit.source);
    const meta = hit.metadata || {};
    const thumb = el("img", {
      src: withParam(hit.image_url, "max_side", 384),
      alt: "",
      loading: i < 8 ? "eager" : "lazy",
      decoding: "async",
      width: meta.width || undefined,
      height: meta.height || undefined,
    });
    thumb.addEventListener("error", () => thumb.parentElement.classList.add("broken"), { once: true });
    const button = el("button", {
      type: "button",
      class: "card-button",
      "aria-label": `${name}, page ${hit.page}, score ${formatScore(hit.score)}${fromOcr(hit) ? ", text from OCR" : ""}: open the page`,
      onclick: () => openViewer(i),
    },
    el("span", { class: "thumb" }, thumb),
    el("span", { class: "card-body" },
      el("span", { class: "card-title", title: hit.source }, name),
      el("span", { class: "card-meta" },
        el("span", { class: "page-no" }, `page ${hit.page}`),
        el("span", { class: "score", title: "score" }, formatScore(hit.score)),
        el("span", { class: "rank" }, `#${hit.rank || i + 1}`)),
      hit.snippet && fromOcr(hit) ? el("span", { class: "text-source", title: OCR_TITLE }, "text from OCR") : null,
      hit.snippet ? el("span", { class: "snippet" }, highlighted(hit.snippet, hit.highlights)) : null));
    return el("li", { class: "card", dataset: { pageId: hit.page_id, rank: String(hit.rank || i + 1) } }, button);
  }

  function submitSearch(event) {
    if (event) event.preventDefault();
    const s = formState();
    if (!s.q) {
      $("q").focus();
      return;
    }
    const url = urlFor(s);
    if (url !== location.pathname + location.search) history.pushState(s, "", url);
    runSearch();
  }

  // ---------------------------------------------------------------- viewer

  function openViewer(i) {
    const hit = state.hits[i];
    if (!hit) return;
    state.current = i;
    const dialog = $("viewer");
    const name = hit.source_name || basename(hit.source);
    $("viewer-title").textContent = `${name} · page ${hit.page}`;
    $("viewer-title").title = hit.source || name;
    const image = $("viewer-image");
    image.src = hit.image_url;
    image.alt = `Page ${hit.page} of ${name}`;
    const meta = hit.metadata || {};
    image.width = meta.width || 0;
    image.height = meta.height || 0;
    if (!meta.width) image.removeAttribute("width");
    if (!meta.height) image.removeAttribute("height");
    const link = $("viewer-source");
    if (hit.source_url) {
      link.href = hit.source_url;
      link.hidden = false;
    } else {
      link.removeAttribute("href");
      link.hidden = true;
    }
    const facts = [["rank", hit.rank || i + 1], ["score", formatScore(hit.score)], ["page", hit.page]];
    for (const [key, value] of Object.entries(meta)) {
      if (value !== null && typeof value !== "object" && key !== "file_name") facts.push([key, value]);
    }
    $("viewer-meta").replaceChildren(
      el("p", { class: "source-path" }, hit.source || name),
      el("dl", { class: "facts" }, facts.map(([key, value]) => [el("dt", {}, key), el("dd", {}, String(value))])));
    $("viewer-text-source").hidden = !fromOcr(hit);
    $("viewer-snippet").replaceChildren(highlighted(hit.snippet || "", hit.highlights));
    $("viewer-prev").disabled = i <= 0;
    $("viewer-next").disabled = i >= state.hits.length - 1;
    const explainable = Boolean(state.index && state.index.explain);
    $("explain-controls").hidden = !explainable;
    $("viewer-overlay").hidden = true;
    $("viewer-overlay").removeAttribute("src");
    if (!dialog.open) {
      dialog.showModal();
      $("viewer-close").focus();
    }
    if (explainable) {
      loadTokens(state.query);
      loadExplain();
    }
  }

  function closeViewer() {
    const dialog = $("viewer");
    if (dialog.open) dialog.close();
  }

  function onViewerClosed() {
    state.explainSeq++;
    const hit = state.hits[state.current];
    if (hit) {
      const cardButton = document.querySelector(`.card[data-rank="${hit.rank || state.current + 1}"] .card-button`);
      if (cardButton) cardButton.focus();
    }
  }

  function step(delta) {
    const next = state.current + delta;
    if (next >= 0 && next < state.hits.length) openViewer(next);
  }

  async function loadTokens(query) {
    if (state.tokensFor === query) return;
    state.tokensFor = query;
    const select = $("explain-token");
    select.replaceChildren(el("option", { value: "all" }, "All tokens"));
    try {
      const data = await (await api(withParam("/v1/explain/tokens", "query", query))).json();
      if (state.tokensFor !== query) return;
      (data.tokens || []).forEach((token, i) => {
        const label = String(token).replace(/^[\u0120\u2581]/, "").trim() || "(space)";
        select.append(el("option", { value: String(i) }, `${i}: ${label}`));
      });
    } catch (e) {
      if (state.tokensFor === query) state.tokensFor = null;
      $("explain-status").textContent = `Tokens unavailable: ${e.title || e.message}`;
    }
  }

  function clearExplainCache() {
    for (const url of state.explainCache.values()) URL.revokeObjectURL(url);
    state.explainCache.clear();
    state.tokensFor = null;
  }

  async function loadExplain() {
    const overlay = $("viewer-overlay");
    const status = $("explain-status");
    const seq = ++state.explainSeq;
    const hit = state.hits[state.current];
    if (!hit || !$("explain-on").checked) {
      overlay.hidden = true;
      status.textContent = "";
      return;
    }
    const token = $("explain-token").value || "all";
    const key = `${hit.page_id}|${state.query}|${token}`;
    let url = state.explainCache.get(key);
    if (!url) {
      status.textContent = "Computing the similarity map…";
      overlay.classList.add("loading");
      try {
        const path = `/v1/pages/${encodeURIComponent(hit.page_id)}/explain` +
          `?query=${encodeURIComponent(state.query)}&token=${encodeURIComponent(token)}`;
        const blob = await (await api(path)).blob();
        url = URL.createObjectURL(blob);
        state.explainCache.set(key, url);
      } catch (e) {
        if (seq === state.explainSeq) {
          status.textContent = `No similarity map: ${e.title || e.message}${e.detail ? ` (${e.detail})` : ""}`;
          overlay.hidden = true;
        }
        return;
      } finally {
        overlay.classList.remove("loading");
      }
    }
    if (seq !== state.explainSeq) return;
    overlay.onload = () => {
      if (seq !== state.explainSeq) return;
      overlay.dataset.token = token;
      overlay.dataset.pageId = hit.page_id;
      status.textContent = token === "all" ? "All query tokens" : `Token ${$("explain-token").selectedOptions[0].textContent}`;
    };
    delete overlay.dataset.token;
    overlay.style.opacity = $("explain-opacity").value;
    overlay.src = url;
    overlay.alt = `Similarity map of “${state.query}” over this page`;
    overlay.hidden = false;
  }

  // ---------------------------------------------------------------- token and upload

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function setToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* storage disabled: the token lasts until the page is left */
    }
  }

  function renderUploadState() {
    const hasToken = Boolean(getToken());
    $("token-form").hidden = hasToken;
    $("dropzone").hidden = !hasToken;
  }

  function toggleUpload(open) {
    const section = $("upload");
    const show = open === undefined ? section.hidden : open;
    section.hidden = !show;
    $("upload-toggle").setAttribute("aria-expanded", String(show));
    if (show) {
      renderUploadState();
      if (!getToken()) $("token").focus();
    }
  }

  /** POST /v1/sources with XHR (fetch cannot report upload progress). */
  function postFiles(files, onProgress) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      for (const file of files) form.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/sources");
      xhr.setRequestHeader("Accept", "application/json, application/problem+json");
      xhr.setRequestHeader("Authorization", `Bearer ${getToken()}`);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded, e.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve(JSON.parse(xhr.responseText));
          } catch (e) {
            reject(new ApiError(xhr.status, "Unexpected answer from the server", xhr.responseText.slice(0, 300)));
          }
        } else {
          reject(problemFrom(xhr.status, xhr.statusText, xhr.getResponseHeader("content-type"), xhr.responseText));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, "Cannot reach the server", "the upload was interrupted"));
      xhr.send(form);
    });
  }

  async function upload(fileList) {
    const files = Array.from(fileList || []).filter((f) => f && f.name);
    if (!files.length) return;
    if (!state.index || !state.index.writable) {
      showError(new ApiError(403, "This server is read-only", "start it with --token-file to add documents"));
      return;
    }
    toggleUpload(true);
    if (!getToken()) {
      showError(new ApiError(401, "Token needed", "enter the access token first, then drop the files again"));
      $("token").focus();
      return;
    }
    const names = files.map((f) => f.name);
    const item = jobItem(names);
    renderJob(item, { state: "uploading", sources: names, pages_done: 0, pages_total: 0 });
    try {
      const job = await postFiles(files, (loaded, total) =>
        renderJob(item, { state: "uploading", sources: names, loaded, total }));
      renderJob(item, job);
      pollJob(job, item);
    } catch (e) {
      renderJob(item, { state: "failed", sources: names, failures: [], error: e });
      showError(e, "Upload failed");
      if (e.status === 401) {
        setToken("");
        renderUploadState();
        $("token").focus();
      }
    }
  }

  function jobItem(names) {
    const item = el("li", { class: "job" });
    item.dataset.sources = names.join("\n");
    $("jobs").prepend(item);
    return item;
  }

  function sourceList(names) {
    const shown = names.slice(0, 3).map(basename).join(", ");
    return names.length > 3 ? `${shown} and ${names.length - 3} more` : shown;
  }

  function renderJob(item, job) {
    const names = job.sources && job.sources.length ? job.sources : (item.dataset.sources || "").split("\n");
    const jobState = job.state || "queued";
    if (job.id) item.dataset.jobId = job.id;
    item.dataset.state = jobState;
    const bar = el("progress", { "aria-label": `Indexing ${sourceList(names)}` });
    let text;
    if (jobState === "uploading") {
      if (job.total) {
        bar.max = job.total;
        bar.value = job.loaded;
        text = `uploading ${Math.round((100 * job.loaded) / job.total)}%`;
      } else {
        text = "uploading…";
      }
    } else if (job.pages_total > 0) {
      bar.max = job.pages_total;
      bar.value = Math.min(job.pages_done || 0, job.pages_total);
      text = `${job.pages_done || 0} / ${plural(job.pages_total, "page")}`;
    } else if (DONE_STATES.has(jobState)) {
      bar.max = 1;
      bar.value = jobState === "done" ? 1 : 0;
      bar.hidden = jobState !== "done";
      text = "";
    } else {
      text = jobState === "queued" ? "waiting for the indexer…" : "starting…";
    }
    if (job.sources_total > 1) text += ` · ${job.sources_done || 0} / ${job.sources_total} files`;
    const facts = [];
    if (jobState === "done" || jobState === "failed") {
      const added = (job.added || []).length;
      const skipped = (job.skipped || []).length;
      if (added) facts.push(`added ${plural(added, "file")}`);
      if (skipped) facts.push(`${skipped} already indexed`);
      if (job.ocr_pages) facts.push(`text from OCR on ${plural(job.ocr_pages, "page")}`);
    }
    const failures = job.failures || [];
    const warnings = job.warnings || [];
    item.replaceChildren(...[
      el("div", { class: "job-head" },
        el("span", { class: "job-name", title: names.join("\n") }, sourceList(names)),
        el("span", { class: `badge ${jobState}` }, jobState),
        DONE_STATES.has(jobState)
          ? el("button", { type: "button", class: "ghost small", "aria-label": "Dismiss", onclick: () => item.remove() }, "✕")
          : null),
      bar,
      el("div", { class: "job-text" }, [text, ...facts].filter(Boolean).join(" · ")),
      warnings.length
        ? el("ul", { class: "warnings", "aria-label": "Indexed with warnings" },
          warnings.map((w) => el("li", {}, el("strong", {}, basename(w.source)), `: ${w.error}`)))
        : null,
      job.error ? el("div", { class: "job-error" }, job.error.title || String(job.error)) : null,
      failures.length
        ? el("ul", { class: "failures", "aria-label": "Files that could not be indexed" },
          failures.map((f) => el("li", {}, el("strong", {}, basename(f.source)), `: ${f.error}`)))
        : null,
    ].filter(Boolean));
  }

  async function pollJob(job, item) {
    let delay = 300;
    let errors = 0;
    let current = job;
    while (!DONE_STATES.has(current.state)) {
      await sleep(delay);
      delay = Math.min(delay * 1.5, 1500);
      try {
        current = await (await api(`/v1/jobs/${encodeURIComponent(job.id)}`, { auth: true })).json();
        errors = 0;
        renderJob(item, current);
      } catch (e) {
        errors += 1;
        if (e.status === 404 || errors >= 5) {
          renderJob(item, { ...current, state: "failed", error: e });
          return;
        }
      }
    }
    await refreshIndex();
    if (state.query && (current.added || []).length) {
      await runSearch();
    }
  }

  async function resumeJobs() {
    try {
      const data = await (await api("/v1/jobs", { auth: true })).json();
      const jobs = Array.isArray(data) ? data : data.jobs || [];
      for (const job of jobs) {
        if (!job || !job.id || DONE_STATES.has(job.state)) continue;
        const item = jobItem(job.sources || []);
        renderJob(item, job);
        pollJob(job, item);
        $("upload").hidden = false;
      }
    } catch (e) {
      /* nothing to resume */
    }
  }

  function hasFiles(event) {
    return Boolean(event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files"));
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $("search-form").addEventListener("submit", submitSearch);
    $("mode").addEventListener("change", () => {
      if ($("q").value.trim()) submitSearch();
    });
    $("rewrite").addEventListener("change", () => {
      if ($("q").value.trim()) submitSearch();
    });

    window.addEventListener("popstate", () => {
      closeViewer();
      applyState(urlState());
      runSearch();
    });

    const dialog = $("viewer");
    dialog.addEventListener("close", onViewerClosed);
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) closeViewer(); // the backdrop
    });
    dialog.addEventListener("keydown", (e) => {
      const tag = (e.target.tagName || "").toLowerCase();
      if (tag === "select" || tag === "input") return;
      if (e.key === "ArrowLeft") step(-1);
      else if (e.key === "ArrowRight") step(1);
    });
    $("viewer-close").addEventListener("click", closeViewer);
    $("viewer-prev").addEventListener("click", () => step(-1));
    $("viewer-next").addEventListener("click", () => step(1));
    $("explain-token").addEventListener("change", loadExplain);
    $("explain-on").addEventListener("change", loadExplain);
    $("explain-opacity").addEventListener("input", (e) => {
      $("viewer-overlay").style.opacity = e.target.value;
    });

    $("upload-toggle").addEventListener("click", () => toggleUpload());
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) {
        $("token").focus();
        return;
      }
      setToken(token);
      $("token").value = "";
      clearMessage();
      renderUploadState();
      $("file-input").focus();
    });
    $("token-clear").addEventListener("click", () => {
      setToken("");
      renderUploadState();
      $("token").focus();
    });
    $("file-input").addEventListener("change", (e) => {
      const files = Array.from(e.target.files || []);
      e.target.value = "";
      upload(files);
    });

    const zone = $("dropzone");
    let depth = 0;
    zone.addEventListener("dragenter", (e) => {
      if (!hasFiles(e)) return;
      depth += 1;
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", () => {
      depth = 0;
      zone.classList.remove("dragging");
    });
    // files dropped anywhere on the page are uploaded (never opened by the browser)
    window.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = state.index && state.index.writable ? "copy" : "none";
    });
    window.addEventListener("drop", (e) => {
      if (!e.dataTransfer || !e.dataTransfer.files || !e.dataTransfer.files.length) return;
      e.preventDefault();
      upload(e.dataTransfer.files);
    });
  }

  async function start() {
    wire();
    const ok = await loadIndex();
    const s = urlState();
    applyState(s);
    history.replaceState(s, "", location.href);
    if (ok && s.q) runSearch();
    if (ok && state.index.writable && getToken()) resumeJobs();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
