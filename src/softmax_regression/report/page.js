"use strict";
// The report page draws itself from the JSON in #run-data. Every string that comes from the
// run is put into the page with textContent or as an attribute value, never parsed as HTML.
(() => {
  const DATA = JSON.parse(document.getElementById("run-data").textContent);
  const app = document.getElementById("app");
  const SVGNS = "http://www.w3.org/2000/svg";
  const TRIM_LEVELS = 13;
  const DRAW = 280;  // the drawing canvas's longer side, in canvas pixels

  // ------------------------------------------------------------------ small helpers
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      const a = Math.abs(v);
      if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
      return v.toFixed(digits === undefined ? 4 : digits);
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  function prob(p) {
    return p < 0.001 ? "<0.001" : p.toFixed(3);
  }
  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function section(title, id) {
    const s = el("section", { id });
    s.append(el("h2", { text: title }));
    app.append(s);
    return s;
  }
  function problem(text) {
    return el("p", { class: "problem", text });
  }
  function table(head, rows, opts) {
    const t = el("table", { class: opts && opts.class, id: opts && opts.id });
    t.append(el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))));
    const body = el("tbody");
    for (const r of rows) body.append(el("tr", r.attrs || {}, r.cells.map((c) => (c instanceof Node ? c : el("td", { text: c })))));
    t.append(body);
    return el("div", { class: "scroll" }, t);
  }
  function kv(obj) {
    const dl = el("dl", { class: "kv" });
    for (const [k, v] of Object.entries(obj || {})) {
      dl.append(el("dt", { text: k }), el("dd", { text: typeof v === "number" ? String(v) : fmt(v) }));
    }
    return dl;
  }
  const PALETTE = ["--c0", "--c1", "--c2", "--c3", "--c4"];
  function colour(i) {
    if (i < PALETTE.length) return `var(${PALETTE[i]})`;
    return `hsl(${(i * 137.5) % 360}, 65%, 55%)`;
  }

  // ------------------------------------------------------------------ line charts (SVG)
  // series: [{name, xs, ys, colour, dash}]; hovering shows every series' value at that x.
  function lineChart(series, opts) {
    const W = 600, H = 280, L = 52, R = 12, T = 12, B = 34;
    const pts = series.flatMap((s) => s.xs.map((x, i) => [x, s.ys[i]])).filter((p) => p[1] !== null && p[1] !== undefined);
    const wrap = el("div", { class: "chartbox" });
    if (!pts.length) return wrap;
    let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    const pad = (y1 - y0) * 0.08 || Math.abs(y0) * 0.05 || 0.5;
    y0 -= pad; y1 += pad;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const s = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
    const title = svg("title", {});
    title.textContent = opts.title || "";
    s.append(title);
    for (let k = 0; k <= 4; k++) {
      const y = y0 + ((y1 - y0) * k) / 4;
      s.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
      const t = svg("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end" });
      t.textContent = fmt(y, 3);
      s.append(t);
    }
    const xt = opts.xticks || [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b);
    const step = Math.max(1, Math.ceil(xt.length / 10));
    xt.forEach((x, i) => {
      if (i % step) return;
      const t = svg("text", { x: sx(x), y: H - B + 16, "text-anchor": "middle" });
      t.textContent = opts.xfmt ? opts.xfmt(x) : fmt(x);
      s.append(t);
    });
    const xl = svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" });
    xl.textContent = opts.xlabel || "";
    s.append(xl);
    s.append(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    s.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    for (const ser of series) {
      const d = ser.xs.map((x, i) => [x, ser.ys[i]]).filter((p) => p[1] !== null && p[1] !== undefined)
        .map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(2)},${sy(p[1]).toFixed(2)}`).join("");
      const path = svg("path", { class: "series", d, stroke: ser.colour });
      if (ser.dash) path.setAttribute("stroke-dasharray", ser.dash);
      s.append(path);
      if (ser.mark !== undefined && ser.mark !== null) {
        const i = ser.xs.indexOf(ser.mark);
        if (i >= 0) s.append(svg("circle", { cx: sx(ser.xs[i]), cy: sy(ser.ys[i]), r: 4, fill: ser.colour }));
      }
    }
    const cursor = svg("line", { class: "hover", x1: 0, x2: 0, y1: T, y2: H - B, visibility: "hidden" });
    s.append(cursor);
    const tip = el("div", { class: "tip muted" });
    const show = (evt) => {
      const box = s.getBoundingClientRect();
      const px = ((evt.clientX - box.left) / box.width) * W;
      let best = xt[0];
      for (const x of xt) if (Math.abs(sx(x) - px) < Math.abs(sx(best) - px)) best = x;
      cursor.setAttribute("x1", sx(best));
      cursor.setAttribute("x2", sx(best));
      cursor.setAttribute("visibility", "visible");
      const parts = series.map((ser) => {
        const i = ser.xs.indexOf(best);
        return i >= 0 && ser.ys[i] !== null ? `${ser.name} ${fmt(ser.ys[i])}` : null;
      }).filter(Boolean);
      tip.textContent = `${opts.xlabel || "x"} ${opts.xfmt ? opts.xfmt(best) : fmt(best)}: ${parts.join(", ")}`;
    };
    s.addEventListener("pointermove", show);
    s.addEventListener("pointerdown", show);
    s.addEventListener("pointerleave", () => cursor.setAttribute("visibility", "hidden"));
    const legend = el("div", { class: "legend" });
    for (const ser of series) {
      const item = ser.href ? el("a", { href: ser.href, text: ser.name }) : el("span", { text: ser.name });
      const sp = ser.href ? el("span", {}, item) : item;
      sp.style.setProperty("--sw", ser.colour);
      legend.append(sp);
    }
    wrap.append(el("h3", { text: opts.title || "" }), s, legend, tip);
    return wrap;
  }

  // ------------------------------------------------------------------ images on canvases
  // uint8 pixels (C, H, W), C 1 (grey) or 3 (RGB), channel planes one after the other.
  function imageCanvas(pixels, C, H, W) {
    const c = el("canvas", { width: W, height: H });
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(W, H);
    const n = W * H;
    for (let i = 0; i < n; i++) {
      img.data[4 * i] = pixels[i];
      img.data[4 * i + 1] = pixels[(C === 3 ? n : 0) + i];
      img.data[4 * i + 2] = pixels[(C === 3 ? 2 * n : 0) + i];
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
  // Diverging scale: negative blue, zero white, positive red; m is the value at full colour.
  function diverging(v, m) {
    const t = Math.max(-1, Math.min(1, m > 0 ? v / m : 0));
    const a = Math.abs(t);
    return t >= 0 ? [255, Math.round(255 * (1 - a)), Math.round(255 * (1 - a))]
      : [Math.round(255 * (1 - a)), Math.round(255 * (1 - 0.55 * a)), 255];
  }
  function heatCanvas(values, m, width, height) {
    const c = el("canvas", { width, height });
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(c.width, c.height);
    for (let i = 0; i < values.length; i++) {
      const [r, g, b] = diverging(values[i], m);
      img.data.set([r, g, b, 255], 4 * i);
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
  function colourBar(m) {
    const n = 100;
    const vals = Array.from({ length: n }, (_, i) => -m + (2 * m * i) / (n - 1));
    return el("div", { class: "colorbar" }, el("span", { text: fmt(-m, 3) }), heatCanvas(vals, m, n, 1), el("span", { text: `+${fmt(m, 3)}` }));
  }

  // ------------------------------------------------------------------ the model in the page
  // input_shape is (C, H, W) for an image model, (D,) for a feature model; the weights are
  // embedded only for an image model (a feature model's page shows its strongest features).
  const MODEL = DATA.model ? (() => {
    const m = DATA.model;
    const f32 = (s) => (s ? new Float32Array(bytes(s).buffer) : null);
    const shape = m.input_shape || [1, 28, 28];
    const image = shape.length === 3;
    const prep = m.preprocessing || { scale: m.normalize, standardized: false };
    return {
      w: f32(m.weight), b: f32(m.bias), classes: m.classes, normalize: m.normalize, shape, image,
      rule: image ? (m.image_rule || "fashion-mnist") : null,
      C: image ? shape[0] : 0, H: image ? shape[1] : 0, W: image ? shape[2] : 0,
      D: shape.reduce((a, v) => a * v, 1),
      scale: prep.scale, standardized: !!prep.standardized, mean: f32(prep.mean), std: f32(prep.std),
    };
  })() : null;
  const CAN_TRY = !!(MODEL && MODEL.image && MODEL.w && (!MODEL.standardized || MODEL.mean));
  const dims = (shape) => shape.join("x");

  // The inputs the linear layer takes, step by step in float32 as the model's Preprocessing
  // does it in torch (x / 255, then (x - mean) / std): the same numbers, bit for bit.
  function inputs(pixels) {
    const x = new Float64Array(MODEL.D);
    const f = Math.fround;
    for (let i = 0; i < x.length; i++) {
      let v = MODEL.scale ? f(pixels[i] / 255) : pixels[i];
      if (MODEL.mean) v = f(f(v - MODEL.mean[i]) / MODEL.std[i]);
      x[i] = v;
    }
    return x;
  }
  function classify(pixels) {
    const x = inputs(pixels);
    const k = MODEL.classes.length;
    const logits = new Float64Array(k);
    for (let c = 0; c < k; c++) {
      let s = MODEL.b[c];
      const row = c * x.length;
      for (let i = 0; i < x.length; i++) s += MODEL.w[row + i] * x[i];
      logits[c] = s;
    }
    const top = Math.max(...logits);  // stable softmax: exp of (logit - max)
    const e = Array.from(logits, (v) => Math.exp(v - top));
    const z = e.reduce((a, v) => a + v, 0);
    return { x, logits: Array.from(logits), probabilities: e.map((v) => v / z) };
  }

  // Exact area averaging, as predict.area_resize: integer coverage weights, rounded half up.
  function coverage(n, m) {  // per output k: [first source index, weights...]
    const out = [];
    for (let k = 0; k < m; k++) {
      const lo = k * n, hi = (k + 1) * n;
      const first = Math.floor(lo / m), last = Math.ceil(hi / m) - 1;
      const ws = [];
      for (let i = first; i <= last; i++) ws.push(Math.max(0, Math.min(hi, (i + 1) * m) - Math.max(lo, i * m)));
      out.push([first, ws]);
    }
    return out;
  }
  function areaResize(a, w, h, W, H) {
    if (w === W && h === H) return Uint8Array.from(a);
    const cx = coverage(w, W), cy = coverage(h, H);
    const tmp = new Float64Array(h * W);
    for (let j = 0; j < h; j++) {
      const row = j * w;
      for (let X = 0; X < W; X++) {
        const [first, ws] = cx[X];
        let s = 0;
        for (let t = 0; t < ws.length; t++) s += ws[t] * a[row + first + t];
        tmp[j * W + X] = s;
      }
    }
    const out = new Uint8Array(W * H);
    const area = w * h;
    for (let Y = 0; Y < H; Y++) {
      const [first, ws] = cy[Y];
      for (let X = 0; X < W; X++) {
        let s = 0;
        for (let t = 0; t < ws.length; t++) s += ws[t] * tmp[(first + t) * W + X];
        out[Y * W + X] = Math.floor((2 * s + area) / (2 * area));
      }
    }
    return out;
  }
  function luma(rgba, n) {  // ITU-R 601-2 luma, PIL's fixed point ("L")
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >>> 16;
    }
    return a;
  }
  // The model's rule of `softmax-regression predict` (predict.py, images.py), on opaque RGBA
  // pixels: uint8 (C, H, W).
  function prepare(rgba, w, h) {
    return MODEL.rule === "resize" ? resizeRule(rgba, w, h) : fashionRule(rgba, w, h, MODEL.H, MODEL.W);
  }
  // images.resize_rule: "L" or "RGB", then exact area averaging to H x W, each channel.
  function resizeRule(rgba, w, h) {
    const { C, H, W } = MODEL;
    const out = new Uint8Array(C * H * W);
    for (let c = 0; c < C; c++) {
      let plane;
      if (C === 1) plane = luma(rgba, w * h);
      else {
        plane = new Uint8Array(w * h);
        for (let i = 0; i < plane.length; i++) plane[i] = rgba[4 * i + c];
      }
      out.set(areaResize(plane, w, h, W, H), c * H * W);
    }
    return out;
  }
  // predict.prepare_image(img, (height, width)): light object on dark, trimmed, fitted.
  function fashionRule(rgba, w, h, height, width) {
    let a = luma(rgba, w * h);
    let border = [];
    for (let x = 0; x < w; x++) border.push(a[x]);
    for (let x = 0; x < w; x++) border.push(a[(h - 1) * w + x]);
    for (let y = 0; y < h; y++) border.push(a[y * w]);
    for (let y = 0; y < h; y++) border.push(a[y * w + w - 1]);
    const sum = border.reduce((s, v) => s + v, 0);
    if (2 * sum > 255 * border.length) {  // mean above 127.5: a light background
      for (let i = 0; i < a.length; i++) a[i] = 255 - a[i];
      border = border.map((v) => 255 - v);
    }
    border.sort((p, q) => p - q);
    const n = border.length;  // 2w + 2h: always even
    const background = Math.floor((border[n / 2 - 1] + border[n / 2]) / 2);
    if (w === width && h === height) return a;
    let [top, bottom, left, right] = [h, -1, w, -1];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (Math.abs(a[y * w + x] - background) > TRIM_LEVELS) {
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
      }
    }
    if (bottom >= 0) {
      const cw = right - left + 1, ch = bottom - top + 1;
      const crop = new Uint8Array(cw * ch);
      for (let y = 0; y < ch; y++) crop.set(a.subarray((top + y) * w + left, (top + y) * w + left + cw), y * cw);
      a = crop; w = cw; h = ch;
    }
    // The longer side relative to the canvas fills it; each side rounded half up, in integers.
    const [num, den] = w * height >= h * width ? [width, w] : [height, h];
    const fw = Math.max(1, Math.min(width, Math.floor((2 * w * num + den) / (2 * den))));
    const fh = Math.max(1, Math.min(height, Math.floor((2 * h * num + den) / (2 * den))));
    const small = areaResize(a, w, h, fw, fh);
    const out = new Uint8Array(width * height).fill(background);
    const x0 = Math.floor((width - fw) / 2), y0 = Math.floor((height - fh) / 2);
    for (let y = 0; y < fh; y++) out.set(small.subarray(y * fw, (y + 1) * fw), (y0 + y) * width + x0);
    return out;
  }
  // A decoded picture laid on white (transparent pixels count as a white page), as RGBA.
  function pixelsOf(source, w, h) {
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);
    ctx.drawImage(source, 0, 0);
    return ctx.getImageData(0, 0, w, h).data;
  }
  async function decode(blob) {
    // The options keep the file's own colours (no colour management, as Pillow); a browser
    // that does not know one of them gets the plain call, then an image element (blob: URL).
    let bmp;
    try {
      bmp = await createImageBitmap(blob, { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" });
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      try {
        bmp = await createImageBitmap(blob);
      } catch (e2) {
        const url = URL.createObjectURL(blob);
        try {
          const img = new Image();
          img.src = url;
          await img.decode();
          return { rgba: pixelsOf(img, img.naturalWidth, img.naturalHeight), w: img.naturalWidth, h: img.naturalHeight };
        } finally {
          URL.revokeObjectURL(url);
        }
      }
    }
    try {
      return { rgba: pixelsOf(bmp, bmp.width, bmp.height), w: bmp.width, h: bmp.height };
    } finally {
      bmp.close();
    }
  }

  // ------------------------------------------------------------------ page: a single run
  function header(title, subtitle) {
    const h = el("header");
    h.append(el("h1", { text: title }));
    if (subtitle) h.append(el("p", { class: "muted small", text: subtitle }));
    app.append(h);
    return h;
  }
  function problems(list) {
    for (const p of list || []) app.append(problem(p));
  }

  function renderRun() {
    const st = DATA.status || {};
    const h = header(DATA.name, DATA.path);
    h.append(el("p", {}, el("span", { class: `badge ${st.status || ""}`, text: st.status || "status unknown" }), " ",
      el("span", { text: `recipe: ${DATA.recipe}` })));
    if (st.error) h.append(problem(`error: ${st.error}`));
    problems(DATA.problems);
    if (DATA.data_problem) app.append(problem(`${DATA.data_problem}: the evaluation, the confusion gallery and the top losses are left out.`));

    const cards = el("div", { class: "cards" });
    const m = Object.assign({}, (DATA.model && DATA.model.metrics) || {}, (st && st.metrics) || {});
    const last = DATA.history && DATA.history.length ? DATA.history[DATA.history.length - 1] : null;
    const final = last ? { train_loss: last.train_loss, train_acc: last.train_acc, val_acc: last.val_acc, test_acc: last.test_acc } : {};
    for (const k of ["train_loss", "train_acc", "val_acc", "test_acc"]) {
      const v = final[k] !== undefined && final[k] !== null ? final[k] : m[k];
      if (v !== undefined && v !== null) cards.append(el("div", { class: "card" }, el("div", { class: "v", text: fmt(v) }), el("div", { class: "k", text: k.replace("_", " ") })));
    }
    if (DATA.evaluation) cards.append(el("div", { class: "card" }, el("div", { class: "v", text: fmt(DATA.evaluation.macro_f1) }), el("div", { class: "k", text: "test macro F1" })));
    if (cards.childElementCount) app.append(cards);

    renderCurves();
    renderSelection();
    renderEvaluation();
    renderWeights();
    renderTry();
    renderSettings();
  }

  function renderCurves() {
    const s = section("Training curves", "curves");
    const hist = DATA.history;
    if (!hist || !hist.length) {
      s.append(el("p", { class: "muted", text: DATA.recipe === "best-linear"
        ? "This recipe is fitted full-batch by L-BFGS: it has no epochs to plot (see the selection below)."
        : "No completed epoch is recorded (history.json is missing or empty)." }));
      return;
    }
    const xs = hist.map((r) => r.epoch);
    const grid = el("div", { class: "charts" });
    grid.append(lineChart([{ name: "train loss", xs, ys: hist.map((r) => r.train_loss), colour: colour(0) }],
      { title: "Train loss", xlabel: "epoch" }));
    const acc = [{ name: "train acc", xs, ys: hist.map((r) => r.train_acc), colour: colour(0), dash: "6 4" }];
    if (hist.some((r) => r.val_acc !== null)) acc.push({ name: "val acc", xs, ys: hist.map((r) => r.val_acc), colour: colour(2) });
    if (hist.some((r) => r.test_acc !== null)) acc.push({ name: "test acc", xs, ys: hist.map((r) => r.test_acc), colour: colour(1) });
    grid.append(lineChart(acc, { title: "Accuracy", xlabel: "epoch" }));
    s.append(grid);
    s.append(table(["epoch", "train loss", "train acc", "val acc", "test acc", "seconds"],
      hist.map((r) => ({ cells: [r.epoch, fmt(r.train_loss), fmt(r.train_acc), fmt(r.val_acc), fmt(r.test_acc), fmt(r.seconds, 3)] }))));
  }

  function renderSelection() {
    const best = DATA.best_linear;
    if (!best) return;
    const s = section("Selection (best-linear)", "selection");
    if (best.how_chosen) s.append(el("p", { text: best.how_chosen }));
    const cands = DATA.candidates || (best.selection && best.selection.candidates) || [];
    const chosen = best.selection ? best.selection.chosen_weight_decay : null;
    if (cands.length) {
      const cols = Object.keys(cands[0]).filter((k) => k !== "chosen");
      s.append(table(cols.map((c) => c.replace(/_/g, " ")).concat(["chosen"]), cands.map((c) => {
        const isChosen = c.weight_decay === chosen || c.chosen === 1;
        return { attrs: isChosen ? { class: "chosen" } : {}, cells: cols.map((k) => fmt(c[k], 4)).concat([isChosen ? "chosen" : ""]) };
      })));
      const sorted = cands.slice().sort((a, b) => a.weight_decay - b.weight_decay);
      s.append(lineChart([{ name: "validation accuracy", xs: sorted.map((c) => Math.log10(c.weight_decay)), ys: sorted.map((c) => c.val_acc), colour: colour(2),
        mark: chosen ? Math.log10(chosen) : null }], { title: "Validation accuracy by weight decay", xlabel: "weight decay", xfmt: (x) => fmt(10 ** x, 4) }));
    }
    const facts = {};
    for (const part of ["validation", "train", "test"]) {
      const p = best[part] || {};
      for (const [k, v] of Object.entries(p)) facts[`${part} ${k}`] = v;
    }
    s.append(kv(facts));
  }

  // A confusion matrix of K classes: a table of buttons with counts up to TEXT_CELLS classes,
  // a canvas (names and counts on hover) up to CANVAS_CELLS, and past that only the table of
  // the largest confusions (which every matrix above TEXT_CELLS classes also gets).
  const TEXT_CELLS = 20, CANVAS_CELLS = 1000, LARGEST = 20;
  function confusionCounts(ev, k) {
    if (ev.confusion) return { at: (i, j) => ev.confusion[i][j], cells: ev.confusion.flatMap((r, i) => r.map((n, j) => [i, j, n])).filter((c) => c[2]) };
    const map = new Map((ev.confusion_cells || []).map(([i, j, n]) => [i * k + j, n]));
    return { at: (i, j) => map.get(i * k + j) || 0, cells: ev.confusion_cells || [] };
  }
  function cellColour(n, max, rgb) {
    const alpha = n ? 0.08 + 0.85 * Math.sqrt(n / max) : 0;
    return `rgba(${rgb}, ${alpha.toFixed(3)})`;
  }

  function renderEvaluation() {
    const ev = DATA.evaluation;
    if (!ev) return;
    const classes = DATA.model.classes;
    const k = classes.length;
    const image = MODEL.image;
    const what = image ? "test images" : "test examples";
    const s = section("Test evaluation", "evaluation");
    s.append(el("p", { text: `test accuracy ${fmt(ev.accuracy)} (${ev.correct}/${ev.total}), macro F1 ${fmt(ev.macro_f1)}` }));
    const perClass = table(["class", "precision", "recall", "F1", "support"],
      ev.per_class.map((c) => ({ cells: [el("td", { class: "text", text: c.name }), fmt(c.precision, 3), fmt(c.recall, 3), fmt(c.f1, 3), c.support] })));
    if (k > 20) perClass.classList.add("tall");  // a bounded box that scrolls
    s.append(perClass);

    const g = DATA.gallery;
    const imgs = g.images ? bytes(g.images) : null;
    const [C, H, W] = image ? MODEL.shape : [0, 0, 0];
    const size = C * H * W;
    const tile = (n) => {
      const it = g.items[n];
      const ok = it.label === it.pred;
      return el("figure", { class: "tile", "data-index": it.index },
        imageCanvas(imgs.subarray(n * size, (n + 1) * size), C, H, W),
        el("div", { class: ok ? "" : "wrong", text: `${classes[it.label]} → ${classes[it.pred]}` }),
        el("div", { class: "muted", text: it.top.map(([c, p]) => `${classes[c]} ${prob(p)}`).join(", ") }),
        el("div", { class: "muted", text: `#${it.index} · loss ${fmt(it.loss, 2)}` }));
    };
    // A feature model's examples as rows of a table: there is no picture of a feature vector.
    const rowsOf = (list) => table(["test example", "true → predicted", "top classes", "loss"], list.map((n) => {
      const it = g.items[n];
      return { attrs: { class: "example", "data-index": it.index }, cells: [`#${it.index}`,
        el("td", { class: `text ${it.label === it.pred ? "" : "wrong"}`, text: `${classes[it.label]} → ${classes[it.pred]}` }),
        el("td", { class: "text", text: it.top.map(([c, p]) => `${classes[c]} ${prob(p)}`).join(", ") }), fmt(it.loss, 2)] };
    }));
    const examples = (list) => (imgs ? list.map(tile) : (list.length ? [rowsOf(list)] : []));

    const counts = confusionCounts(ev, k);
    const max = counts.cells.reduce((a, c) => Math.max(a, c[2]), 1);
    const gallery = el("div", { class: "gallery", id: "cell-gallery" });
    const caption = el("p", { class: "muted", id: "cell-caption", text: "No cell selected." });
    const kept = Object.keys(g.cells).length;
    let mark = () => {};
    const select = (i, j) => {
      const n = counts.at(i, j);
      const list = g.cells[`${i},${j}`] || [];
      let text = `true ${classes[i]}, predicted ${classes[j]}: ${n} ${what}`;
      if (n && !list.length) {
        text += `; none of them is in this page, which keeps the examples of ${kept} of the ${g.cells_nonempty} non-empty cells (every class's own, then the largest confusions)`;
      } else if (n > list.length) text += `, the ${list.length} most confident shown`;
      caption.textContent = text;
      gallery.replaceChildren(...examples(list));
      mark(i, j);
    };
    s.append(el("h3", { text: `Confusion matrix (rows: true class, columns: predicted); click a cell for its ${what}` }));
    const rgb = getComputedStyle(document.documentElement).getPropertyValue("--cell").trim() || "31, 111, 235";
    if (k <= TEXT_CELLS) {
      const t = el("table", { class: "confusion" });
      t.append(el("tr", {}, el("th"), classes.map((c) => el("th", { class: "col", text: c }))));
      for (let i = 0; i < k; i++) {
        const tr = el("tr", {}, el("th", { text: classes[i] }));
        for (let j = 0; j < k; j++) {
          const n = counts.at(i, j);
          const b = el("button", { type: "button", "data-cell": `${i},${j}`, title: `true ${classes[i]}, predicted ${classes[j]}: ${n}`, text: n });
          b.style.background = `rgba(var(--cell), ${(n ? 0.08 + 0.85 * Math.sqrt(n / max) : 0).toFixed(3)})`;
          b.addEventListener("click", () => select(i, j));
          tr.append(el("td", {}, b));
        }
        t.append(tr);
      }
      mark = (i, j) => {
        t.querySelectorAll("button.sel").forEach((x) => x.classList.remove("sel"));
        t.querySelector(`[data-cell='${i},${j}']`).classList.add("sel");
      };
      s.append(el("div", { class: "scroll" }, t));
    } else if (k <= CANVAS_CELLS) {
      const px = Math.max(1, Math.min(14, Math.floor(720 / k)));
      const c = el("canvas", { id: "confusion-canvas", class: "confusion-canvas", width: k * px, height: k * px, role: "img",
        "aria-label": `confusion matrix of ${k} classes; the table below lists the largest confusions` });
      const ctx = c.getContext("2d");
      for (const [i, j, n] of counts.cells) {
        ctx.fillStyle = cellColour(n, max, rgb);
        ctx.fillRect(j * px, i * px, px, px);
      }
      const base = ctx.getImageData(0, 0, c.width, c.height);
      const tip = el("div", { class: "tip muted", id: "confusion-tip", text: "Hover over a cell for its classes and count." });
      const cellAt = (evt) => {
        const box = c.getBoundingClientRect();
        const j = Math.floor(((evt.clientX - box.left) / box.width) * k);
        const i = Math.floor(((evt.clientY - box.top) / box.height) * k);
        return i >= 0 && j >= 0 && i < k && j < k ? [i, j] : null;
      };
      c.addEventListener("pointermove", (evt) => {
        const at = cellAt(evt);
        if (!at) return;
        const label = `true ${classes[at[0]]}, predicted ${classes[at[1]]}: ${counts.at(at[0], at[1])}`;
        tip.textContent = label;
        c.title = label;
      });
      c.addEventListener("click", (evt) => { const at = cellAt(evt); if (at) select(at[0], at[1]); });
      mark = (i, j) => {
        ctx.putImageData(base, 0, 0);
        ctx.strokeStyle = getComputedStyle(document.body).color;
        ctx.lineWidth = Math.max(1, px / 4);
        ctx.strokeRect(j * px - 1, i * px - 1, px + 2, px + 2);
      };
      s.append(el("div", { class: "scroll" }, c), tip);
    } else {
      s.append(el("p", { class: "muted", text: `${k} classes: too many to draw the matrix; its largest confusions follow.` }));
    }
    if (k > TEXT_CELLS) {
      const off = counts.cells.filter(([i, j]) => i !== j).sort((p, q) => q[2] - p[2] || p[0] - q[0] || p[1] - q[1]).slice(0, LARGEST);
      s.append(el("h4", { text: "The largest confusions" }), table(["true", "predicted", "count"], off.map(([i, j, n]) => ({
        cells: [el("td", { class: "text" }, el("button", { type: "button", class: "plain cell", "data-cell": `${i},${j}`, text: classes[i], onclick: () => select(i, j) })),
          el("td", { class: "text", text: classes[j] }), n] }))));
    }
    s.append(caption, gallery);

    s.append(el("h3", { text: `Top losses: the ${what} the model is most confidently wrong about` }));
    s.append(el("div", { class: "gallery", id: "top-losses" }, examples(g.top_losses)));
  }

  // The scale saturates at the 99th percentile of |v|: a few huge weights on inputs that are
  // nearly constant in the data (best-linear's folded standardisation) would wash out the rest.
  function saturation(values) {
    const mags = Float64Array.from(values, Math.abs).sort();
    return [mags[Math.floor(0.99 * (mags.length - 1))] || mags[mags.length - 1] || 1, mags[mags.length - 1]];
  }
  // One value per pixel: the weights of a grey model, the mean over the channels of an RGB one.
  function perPixel(values, C, n) {
    if (C === 1) return values;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < C; c++) v += values[c * n + i];
      out[i] = v / C;
    }
    return out;
  }

  function renderWeights() {
    if (!MODEL) return;
    if (!MODEL.image) { renderFeatures(); return; }
    const s = section("Weights", "weights");
    if (!MODEL.w) { s.append(el("p", { class: "muted", text: DATA.model.weight_note || "The weights are not embedded in this page." })); return; }
    const { C, H, W, D } = MODEL;
    const k = MODEL.classes.length;
    const maps = MODEL.classes.map((_, c) => perPixel(MODEL.w.subarray(c * D, (c + 1) * D), C, H * W));
    const [m, largest] = saturation(maps.flatMap((v) => Array.from(v)));
    const what = C === 1
      ? `Each class's ${D} weights as a ${H}x${W} image: red pixels raise the class's score when bright, blue ones lower it. `
      : `Each class's ${D} weights (3 channels of ${H}x${W}) drawn as the mean over the red, green and blue weights of each pixel: red pixels raise the class's score when bright in every channel, blue ones lower it (a colour preference shows in the channels, not in this mean). `;
    const prep = MODEL.standardized ? "The weights act on standardised pixels ((x - mean) / std per pixel, training-split statistics). " : "";
    s.append(el("p", { class: "muted", text: what + prep + `The colours saturate at ±${fmt(m, 3)}, the 99th percentile of |w| (largest ${fmt(largest, 3)}).` }));
    const box = el("div", { class: "weights" });
    for (let c = 0; c < k; c++) box.append(el("figure", {}, heatCanvas(maps[c], m, W, H), el("figcaption", { text: MODEL.classes[c] })));
    s.append(box, colourBar(m));
  }

  function renderFeatures() {
    const f = DATA.model.features;
    if (!f) return;
    const s = section("Strongest features per class", "features");
    const name = (i) => (f.names ? f.names[i] : `feature ${i}`);
    s.append(el("p", { class: "muted", text: `For each class, the ${f.top} features whose weights raise its score most and the ${f.top} that lower it most, with the weights. ` +
      (MODEL.standardized
        ? "The weights act on standardised inputs ((x - mean) / std per feature, with the training split's statistics), which makes them comparable across features: a weight is the change in the class's score per standard deviation of its feature."
        : "The inputs are not standardised: a weight is the change in the score per unit of its feature as stored, comparable across features only if they share a scale (train with --standardize to make them so).") }));
    const pairs = (list) => list.map(([i, w]) => `${name(i)} (${w >= 0 ? "+" : ""}${fmt(w, 3)})`).join(", ");
    s.append(table(["class", "raise the score most", "lower it most"], MODEL.classes.map((c, k) => ({
      cells: [el("td", { class: "text", text: c }), el("td", { class: "text", text: pairs(f.classes[k].positive) }),
        el("td", { class: "text", text: pairs(f.classes[k].negative) })] })), { class: "features", id: "features-table" }));
  }

  function renderTry() {
    if (!CAN_TRY) return;
    const { C, H, W, D } = MODEL;
    const k = MODEL.classes.length;
    const s = section("Try it", "try");
    const mode = C === 1 ? "grayscale" : "RGB";
    const rule = MODEL.rule === "resize"
      ? `converted to ${mode} and resized to ${H}x${W} (height x width, the aspect ratio not kept)`
      : `made into a ${H}x${W} grayscale image with a light object on a dark background (inverted if its background is light, trimmed and fitted, as Fashion-MNIST's images were made)`;
    const prep = (MODEL.scale ? ", its pixels divided by 255" : "") + (MODEL.standardized ? " and standardised with the training split's mean and std" : "");
    s.append(el("p", { class: "muted", text: `Draw (dark on white), or pick or drop an image. It is ${rule}${prep}, by the same rule as softmax-regression predict for this model, and the model's ${D}x${k} weights, embedded in this page, score it. ` +
      "(A JPEG much larger than that is decoded by predict at a reduced scale, so its pixels may differ slightly from this page's.)" }));
    const dw = W >= H ? DRAW : Math.max(1, Math.round((DRAW * W) / H));
    const dh = H >= W ? DRAW : Math.max(1, Math.round((DRAW * H) / W));
    const draw = el("canvas", { id: "draw", width: dw, height: dh });
    const ctx = draw.getContext("2d", { willReadFrequently: true });
    const clear = () => { ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, draw.width, draw.height); };
    clear();
    const ink = C === 3 ? el("input", { type: "color", id: "ink", value: "#000000", title: "ink colour" }) : null;
    const file = el("input", { type: "file", id: "file", accept: "image/*" });
    const drop = el("div", { class: "drop", id: "drop" }, el("label", { for: "file", text: "Pick an image, or drop one here: " }), file);
    const status = el("p", { class: "muted small", id: "try-status", text: "Draw or load an image." });
    const left = el("div", {}, draw,
      el("p", {}, el("button", { type: "button", class: "plain", id: "clear", text: "Clear", onclick: () => { clear(); show(null); } }),
        ink ? " ink " : null, ink), drop);
    const seen = el("div", { class: "seen" });
    const bars = el("div", { class: "bars", id: "bars" });
    const right = el("div", {}, el("h3", { text: "What the model sees, and the evidence for its top class" }), seen, status, bars);
    s.append(el("div", { class: "try" }, left, right));

    function show(result, label) {
      REPORT.last = result;
      if (!result) {
        seen.replaceChildren();
        bars.replaceChildren();
        status.textContent = "Draw or load an image.";
        return;
      }
      const order = result.probabilities.map((p, c) => [p, c]).sort((a, b) => b[0] - a[0]);
      const topK = order[0][1];
      const ev = perPixel(Array.from(result.x, (v, i) => MODEL.w[topK * D + i] * v).map((v) => v * C), C, H * W);  // summed over channels
      const m = Array.prototype.reduce.call(ev, (a, v) => Math.max(a, Math.abs(v)), 1e-12);
      seen.replaceChildren(el("figure", {}, imageCanvas(result.pixels, C, H, W), el("figcaption", { class: "small", text: `${H}x${W} input` })),
        el("figure", {}, heatCanvas(ev, m, W, H), el("figcaption", { class: "small", text: `evidence for ${MODEL.classes[topK]} (red for, blue against)` })));
      status.textContent = `${label}: ${MODEL.classes[topK]} ${fmt(order[0][0], 3)}`;
      status.setAttribute("data-top", MODEL.classes[topK]);
      // Every class up to TEXT_CELLS of them; past that the most likely ones.
      const shown = k <= TEXT_CELLS ? order.map((o) => o[1]).sort((a, b) => a - b) : order.slice(0, TEXT_CELLS).map((o) => o[1]);
      bars.replaceChildren(...shown.flatMap((c) => {
        const p = result.probabilities[c];
        const cls = c === topK ? "top" : "";
        const bar = el("div", { class: "bar" });
        bar.style.width = `${(100 * p).toFixed(2)}%`;
        return [el("span", { class: cls, text: MODEL.classes[c] }), el("div", {}, bar), el("span", { class: cls, text: p.toFixed(4) })];
      }));
    }
    function run(rgba, w, h) {
      const pixels = prepare(rgba, w, h);
      return Object.assign({ pixels: Array.from(pixels) }, classify(pixels));
    }
    async function load(blob, label) {
      try {
        const { rgba, w, h } = await decode(blob);
        const r = run(rgba, w, h);
        show(r, label);
        return r;
      } catch (e) {
        show(null);
        status.textContent = `${label}: this browser cannot read it as an image (${e && e.name ? e.name : "error"})`;
        return null;
      }
    }
    // Drawing: pointer events cover mouse, pen and touch; the prediction follows each stroke.
    let drawing = false, lastPt = null, pending = false;
    const point = (evt) => {
      const b = draw.getBoundingClientRect();
      return [((evt.clientX - b.left) / b.width) * draw.width, ((evt.clientY - b.top) / b.height) * draw.height];
    };
    const update = () => {
      pending = false;
      show(run(ctx.getImageData(0, 0, draw.width, draw.height).data, draw.width, draw.height), "drawing");
    };
    draw.addEventListener("pointerdown", (evt) => {
      drawing = true;
      lastPt = point(evt);
      draw.setPointerCapture(evt.pointerId);
      evt.preventDefault();
    });
    draw.addEventListener("pointermove", (evt) => {
      if (!drawing) return;
      const p = point(evt);
      ctx.strokeStyle = ink ? ink.value : "#000000";
      ctx.lineWidth = 18;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(lastPt[0], lastPt[1]);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
      lastPt = p;
      if (!pending) { pending = true; requestAnimationFrame(update); }
    });
    const end = () => { if (drawing) { drawing = false; update(); } };
    draw.addEventListener("pointerup", end);
    draw.addEventListener("pointercancel", end);
    file.addEventListener("change", () => { if (file.files.length) load(file.files[0], file.files[0].name); });
    drop.addEventListener("dragover", (evt) => { evt.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (evt) => {
      evt.preventDefault();
      drop.classList.remove("over");
      const f = evt.dataTransfer.files[0];
      if (f) load(f, f.name);
    });
    // What the tests drive (and what anyone may call from the console).
    REPORT.classifyRGBA = (rgba, w, h) => run(rgba, w, h);
    REPORT.classifyBase64 = (b64, type) => load(new Blob([bytes(b64)], { type: type || "image/png" }), "image");
    REPORT.drawingPNG = () => draw.toDataURL("image/png");
  }

  function renderSettings() {
    const s = section("Settings, data and versions", "settings");
    const cfg = DATA.config;
    if (!cfg) { s.append(el("p", { class: "muted", text: "No config.json: the settings are unknown." })); return; }
    s.append(el("h3", { text: "Settings" }), kv(cfg.config));
    if (MODEL) {
      const m = DATA.model;
      const d = m.data || {};
      const facts = { inputs: MODEL.image ? `${dims(MODEL.shape)} (${MODEL.C === 1 ? "grayscale" : "RGB"} images, C x H x W)` : `${MODEL.D} features`, classes: MODEL.classes.length };
      if (MODEL.image) facts["image rule"] = MODEL.rule;
      Object.assign(facts, (m.preprocessing && m.preprocessing.describe) || {});
      for (const key of ["name", "train_examples", "test_examples"]) if (d[key] !== undefined) facts[`data ${key.replace("_", " ")}`] = d[key];
      s.append(el("h3", { text: "Model and data" }), kv(facts));
    }
    const run = { seed: cfg.seed, device: cfg.device, cpu_threads: cfg.cpu_threads };
    const st = DATA.status || {};
    for (const k of ["status", "started", "finished"]) if (st[k] !== undefined) run[k] = st[k];
    if (st.metrics && st.metrics.seconds !== undefined) run.seconds = st.metrics.seconds;
    else if (DATA.history) run["seconds (epochs)"] = DATA.history.reduce((a, r) => a + r.seconds, 0);
    s.append(el("h3", { text: "Run" }), kv(run));
    s.append(el("h3", { text: "Data SHA-256" }), kv(cfg.data_sha256));
    s.append(el("h3", { text: "Versions" }), kv(cfg.versions));
  }

  // ------------------------------------------------------------------ page: several runs
  function renderIndex() {
    const what = { seeds: "runs of one setting with different seeds", sweep: "a sweep: each row a setting, mean over seeds", runs: "runs" }[DATA.subkind] || "runs";
    header(DATA.name, `${DATA.path} · ${what}`);
    problems(DATA.problems);
    if (DATA.summary && Object.keys(DATA.summary).length) {
      const s = section("Mean ± standard deviation over seeds", "summary");
      s.append(table(["metric", "mean ± std", "n", "values"], Object.entries(DATA.summary).map(([k, v]) => ({
        cells: [k, `${fmt(v.mean)} ± ${fmt(v.std)}`, v.n, (v.values || []).map((x) => fmt(x)).join(", ")] }))));
    }
    for (const n of DATA.notes || []) app.append(el("p", { class: "muted small", text: n }));
    if (DATA.base_config) { const s = section("Base settings", "base"); s.append(kv(DATA.base_config)); }

    const rows = DATA.rows || [];
    const s = section(DATA.subkind === "sweep" ? "Settings" : "Runs", "runs");
    const settingKeys = [...new Set(rows.flatMap((r) => Object.keys(r.settings || {})))];
    // Settings shown: those that differ between the runs that have them (all, for one run).
    const varying = settingKeys.filter((k) => rows.length === 1 || k === "recipe" || new Set(rows.filter((r) => r.settings && k in r.settings)
      .map((r) => JSON.stringify(r.settings[k]))).size > 1);
    const metricKeys = [...new Set(rows.flatMap((r) => Object.keys(r.metrics || {})))];
    const cols = [{ key: "name", kind: "name" }, { key: "status", kind: "status" }]
      .concat(metricKeys.map((k) => ({ key: k, kind: "metric" }))).concat(varying.map((k) => ({ key: k, kind: "setting" })));
    const value = (r, c) => c.kind === "name" ? r.name : c.kind === "status" ? r.status : c.kind === "setting" ? (r.settings || {})[c.key] : (r.metrics || {})[c.key];
    const tbl = el("table", { id: "runs-table" });
    const tbody = el("tbody");
    let sortKey = null, sortDir = 1;
    const fill = () => {
      const sorted = rows.slice();
      if (sortKey) {
        sorted.sort((a, b) => {
          const va = value(a, sortKey), vb = value(b, sortKey);
          if (va === vb) return 0;
          if (va === undefined || va === null) return 1;
          if (vb === undefined || vb === null) return -1;
          return (typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb))) * sortDir;
        });
      }
      tbody.replaceChildren(...sorted.map((r) => el("tr", {}, cols.map((c) => {
        const v = value(r, c);
        if (c.kind === "name") return el("td", { class: "text" }, r.href ? el("a", { href: r.href.split("/").map(encodeURIComponent).join("/"), text: r.name }) : r.name);
        return el("td", { class: c.kind === "metric" ? "" : "text", text: fmt(v) });
      }))));
    };
    tbl.append(el("thead", {}, el("tr", {}, cols.map((c) => el("th", {
      class: `sortable ${c.kind === "metric" ? "" : "text"}`, text: c.key.replace(/_/g, " "), title: "click to sort",
      onclick: () => { sortDir = sortKey === c ? -sortDir : 1; sortKey = c; fill(); },
    })))), tbody);
    fill();
    s.append(el("div", { class: "scroll" }, tbl));

    const withCurves = rows.filter((r) => r.curves && r.curves.epoch && r.curves.epoch.length);
    if (withCurves.length) {
      const cs = section("Curves, overlaid", "overlay");
      const names = [...new Set(withCurves.flatMap((r) => Object.keys(r.curves).filter((k) => k !== "epoch")))];
      const pick = el("select", { id: "overlay-metric" }, names.map((n) => el("option", { value: n, text: n.replace(/_/g, " ") })));
      pick.value = names.includes("test_acc") ? "test_acc" : names[0];
      const holder = el("div");
      const drawOverlay = () => {
        const k = pick.value;
        holder.replaceChildren(lineChart(withCurves.filter((r) => r.curves[k]).map((r, i) => ({
          name: r.name, xs: r.curves.epoch, ys: r.curves[k], colour: colour(i),
          href: r.href ? r.href.split("/").map(encodeURIComponent).join("/") : null,
        })), { title: k.replace(/_/g, " "), xlabel: "epoch" }));
      };
      pick.addEventListener("change", drawOverlay);
      drawOverlay();
      cs.append(el("label", {}, "metric: ", pick), holder);
    }
  }

  const REPORT = { ready: false };
  window.softmaxReport = REPORT;
  if (CAN_TRY) REPORT.prepare = (rgba, w, h) => Array.from(prepare(rgba, w, h));
  try {
    if (DATA.kind === "index") renderIndex();
    else renderRun();
    const foot = el("footer", { class: "muted small" }, el("p", { text: `${DATA.generator || ""} · written ${DATA.generated || ""}` }));
    app.append(foot);
  } catch (e) {
    app.append(problem(`This page could not draw itself: ${e && e.message ? e.message : e}`));
    throw e;
  }
  REPORT.ready = true;
  REPORT.readyAt = performance.now();
  document.documentElement.setAttribute("data-ready", "1");
})();
