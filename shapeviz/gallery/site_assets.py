"""The static site's stylesheet and the explorer's script (plain text; no external fonts or scripts).

>>> "svExplorer" in EXPLORER_JS, "font-family" in CSS
(True, True)

The script re-implements no shape rule: it reads the form, keeps the URL's hash in step with it
(a link that says ``family=GRUCell``, from before the family and the cell were separate, still loads),
multiplies out the dims and fills in the explain template of ``explorer-rule.js``
(:mod:`shapeviz.gallery.explorer_rule`), and shows the diagram the Python builder drew for the chosen
family, flags, proj_size, T and bs (one ``explorer/<key>.js`` file each, loaded with a ``<script>`` tag, so
the site also works from ``file://``).
"""

from __future__ import annotations

CSS = """
body{font-family:Arial,"Liberation Sans",Arimo,Helvetica,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;
color:#222;line-height:1.45}
a{color:#1f5fa8}nav{margin:12px 0;font-size:90%}
pre{background:#f6f6f4;border:1px solid #ddd;padding:8px 10px;overflow-x:auto;font-size:13px;
font-family:"DejaVu Sans Mono",Menlo,Consolas,"Liberation Mono",monospace}
pre.wrap{white-space:pre-wrap;overflow-wrap:anywhere}
img.diagram,.diagram svg{max-width:100%;height:auto;border:1px solid #eee}
div.diagram{overflow-x:auto}.diagram.full svg{max-width:none}
.thumbs{display:flex;flex-wrap:wrap;gap:14px}.thumbs a{width:270px;text-decoration:none}
.thumbs img{width:260px;height:160px;object-fit:contain;border:1px solid #ddd;background:#fff}
.error pre{border-left:4px solid #c0392b}
form.controls{display:flex;flex-wrap:wrap;gap:10px 18px;align-items:center;padding:10px;border:1px solid #ccc;
background:#fafafa;border-radius:4px}
form.controls label{font-weight:bold;margin-right:4px}form.controls input[type=number]{width:5em}
#notes code{white-space:pre-wrap}select:focus,input:focus{outline:3px solid #f0a500;outline-offset:1px}
table.shapes{border-collapse:collapse}table.shapes td,table.shapes th{border:1px solid #ccc;padding:2px 8px;
font-family:monospace;text-align:left}
"""

EXPLORER_JS = r"""
(function () {
  "use strict";
  var R = window.svRule;
  var LAYER = ["family", "cell", "layers", "bidirectional", "batch_first"];  // as Conventions names them
  var DRAWN = ["proj", "T", "bs"];  // the pre-drawn diagram's own sizes (input_size 10, hidden_size 20)
  var FIELDS = LAYER.concat(DRAWN);
  var FREE = ["input_size", "hidden_size", "proj_size", "free_T", "free_bs", "mode", "lengths"];  // any sizes
  var cache = {};
  var wanted = null;

  function el(name) { return document.getElementById(name); }
  function read() {
    var cfg = {};
    FIELDS.forEach(function (f) {
      var c = el(f);
      cfg[f] = c.type === "checkbox" ? (c.checked ? "1" : "0") : c.value;
    });
    return cfg;
  }
  function write(cfg) {
    FIELDS.forEach(function (f) {
      var c = el(f);
      if (c.type === "checkbox") { c.checked = cfg[f] === "1"; } else { c.value = cfg[f]; }
    });
  }
  function normalise(cfg) {  // controls a cell or a non-LSTM does not have; no shape rule here
    var cell = cfg.cell === "1";
    if (cell) { cfg.layers = "1"; cfg.bidirectional = "0"; cfg.batch_first = "0"; }
    if (cfg.family !== "LSTM" || cell) { cfg.proj = "0"; }
    ["layers", "bidirectional", "batch_first"].forEach(function (f) { el(f).disabled = cell; });
    el("proj").disabled = cfg.family !== "LSTM" || cell;
    return cfg;
  }
  function kind(cfg) { return cfg.family + (cfg.cell === "1" ? "Cell" : ""); }  // the class name
  function key(cfg) {
    return [kind(cfg), "L" + cfg.layers, cfg.bidirectional === "1" ? "bi" : "uni",
            cfg.batch_first === "1" ? "bf" : "sf", "p" + cfg.proj, "T" + cfg.T, "bs" + cfg.bs].join("-");
  }
  function show(k) {  // the pre-drawn diagram
    var d = cache[k];
    el("drawn-call").textContent = d.call;
    el("diagram").innerHTML = d.svg;
    document.body.setAttribute("data-shown", k);
  }
  function update() {
    var cfg = normalise(read());
    write(cfg);
    wanted = key(cfg);
    freeSizes(cfg);
    var hash = "#" + FIELDS.map(function (f) { return f + "=" + encodeURIComponent(cfg[f]); }).concat(
      FREE.map(function (f) { return f + "=" + encodeURIComponent(el(f).value); })).join("&");
    if (window.location.hash !== hash) { history.replaceState(null, "", hash); }
    if (cache[wanted]) { show(wanted); return; }
    var s = document.createElement("script");
    s.src = "explorer/" + wanted + ".js";
    document.head.appendChild(s);
  }
  function restore() {
    var cfg = read(), freeGiven = false;
    window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var kv = part.split("=");
      if (kv.length !== 2) { return; }
      var v = decodeURIComponent(kv[1]);
      if (kv[0] === "family" && R.families.indexOf(v) < 0 && /Cell$/.test(v) &&
          R.families.indexOf(v.replace(/Cell$/, "")) >= 0) {
        cfg.family = v.replace(/Cell$/, "");  // a link from before: family=GRUCell is family=GRU, cell=1
        cfg.cell = "1";
      } else if (FIELDS.indexOf(kv[0]) >= 0) {
        var c = el(kv[0]);
        var ok = c.type === "checkbox" ? (v === "0" || v === "1") :
          Array.prototype.some.call(c.options, function (o) { return o.value === v; });
        if (ok) { cfg[kv[0]] = v; }
      } else if (FREE.indexOf(kv[0]) >= 0) {  // checked again by freeSizes
        var input = el(kv[0]);
        var fits = input.tagName === "SELECT" ?
          Array.prototype.some.call(input.options, function (o) { return o.value === v; }) : /^[0-9, ]{0,200}$/.test(v);
        if (fits) { input.value = v; freeGiven = true; }
      }
    });
    if (!freeGiven && window.location.hash.length > 1) {  // a link from before any sizes: its proj, T and bs
      el("proj_size").value = cfg.proj; el("free_T").value = cfg.T; el("free_bs").value = cfg.bs;
    }
    write(cfg);
  }
  // Everything but the diagram: each argument's dims and explain's text come from window.svRule (written by
  // shapeviz out of its conventions); here they are only multiplied out.
  function positive(id, low) {
    var v = el(id).value.trim();
    return /^[0-9]+$/.test(v) && parseInt(v, 10) >= low ? parseInt(v, 10) : null;
  }
  function tupleText(shape) {
    return "(" + shape.join(", ") + (shape.length === 1 ? "," : "") + ")";
  }
  function fill(template, sizes) {  // literal text and [k, name, ...] products
    return template.map(function (seg) {
      return typeof seg === "string" ? seg : String(seg.slice(1).reduce(function (n, f) { return n * sizes[f]; },
                                                                        seg[0]));
    }).join("");
  }
  function clear(problem) {
    el("free-error").textContent = problem;
    ["shapes", "notes", "label", "bound"].forEach(function (id) { el(id).innerHTML = ""; });
    ["code", "explain"].forEach(function (id) { el(id).textContent = ""; });
  }
  function freeSizes(cfg) {
    var cell = cfg.cell === "1", lstm = cfg.family === "LSTM" && !cell;
    el("proj_size").disabled = !lstm;
    if (!lstm) { el("proj_size").value = "0"; }
    var packedOption = el("mode").querySelector('option[value="packed"]');
    packedOption.disabled = cell;
    if (cell && el("mode").value === "packed") { el("mode").value = "batched"; }
    var mode = el("mode").value;
    el("lengths").disabled = mode !== "packed";
    el("free_T").disabled = mode === "packed" || cell;
    el("free_bs").disabled = mode !== "batched";
    var given = {input_size: positive("input_size", 1), hidden_size: positive("hidden_size", 1),
                 proj_size: positive("proj_size", 0), num_layers: parseInt(cfg.layers, 10)};
    var bad = Object.keys(given).filter(function (k) { return given[k] === null; });
    var T = positive("free_T", 1), bs = positive("free_bs", 1);
    if (T === null) { bad.push("T"); }
    if (bs === null) { bad.push("bs"); }
    var sizes = {T: T, bs: bs, D: R.D[cfg.bidirectional]};
    Object.keys(R.args).forEach(function (name) { sizes[name] = given[R.args[name]]; });
    var lengths = [];
    if (mode === "packed") {
      lengths = el("lengths").value.split(",").map(function (p) { return p.trim(); });
      if (!lengths.every(function (p) { return /^[0-9]+$/.test(p) && parseInt(p, 10) > 0; })) {
        bad.push("lengths (positive whole numbers, comma separated)");
      }
      lengths = lengths.map(function (p) { return parseInt(p, 10); });
      var agg = {sum: lengths.reduce(function (a, b) { return a + b; }, 0), count: lengths.length,
                 max: Math.max.apply(null, lengths)};
      Object.keys(R.packed).forEach(function (name) { sizes[name] = agg[R.packed[name]]; });
    }
    var proj = lstm && given.proj_size > 0;
    var problem = bad.length ? "not a valid size: " + bad.join(", ") :
      (proj && given.proj_size >= given.hidden_size ? "proj_size must be smaller than hidden_size" : "");
    if (problem) { clear(problem); return; }
    el("free-error").textContent = "";
    var flags = [cfg.family, cell ? "1" : "0", cfg.batch_first, proj ? "1" : "0"];
    var dims = R.dims[flags.concat([mode]).join("|")];
    var table = document.createElement("table");
    table.className = "shapes";
    table.innerHTML = "<tr><th>argument</th><th>shape</th><th>with sizes</th></tr>";
    function sizeOf(exprs) {
      return exprs.map(function (expr) {
        return expr.split("*").reduce(function (n, f) {
          return n * (/^[0-9]+$/.test(f) ? parseInt(f, 10) : sizes[f]);
        }, 1);
      });
    }
    var shapes = {};
    Object.keys(dims).forEach(function (name) {
      var shape = sizeOf(dims[name]);
      shapes[name] = shape;
      var tr = table.insertRow();
      tr.setAttribute("data-name", name);
      [name, "(" + dims[name].join(", ") + ")", tupleText(shape)].forEach(function (text, i) {
        var c = document.createElement(i === 0 ? "th" : "td");
        c.textContent = text;
        c.className = ["", "sym", "shape"][i];
        tr.appendChild(c);
      });
    });
    el("shapes").innerHTML = "";
    el("shapes").appendChild(table);
    var said = {sum: "sum(lengths)", count: "len(lengths)", max: "max(lengths)"};
    el("bound").textContent = mode !== "packed" ? "" : "A packed batch: " + Object.keys(R.packed).map(function (n) {
      return (n === said[R.packed[n]] ? n : n + " = " + said[R.packed[n]]) + " = " + sizes[n];
    }).join(", ") + ".";
    var padded = mode === "packed" ? sizeOf(R.dims[flags.concat(["batched"]).join("|")].input) : null;
    el("code").textContent = freeCode(cfg, given, proj, mode, shapes, padded, lengths, T, bs);
    // sv.explain(layer, ...) as the code's last line calls it: T unless packed or a cell, bs only for a batch
    var withT = !cell && mode !== "packed", withBs = mode === "batched";
    var textKey = [cfg.family, cell ? "1" : "0", cfg.batch_first, cfg.bidirectional, proj ? "1" : "0",
                   cfg.layers === "1" ? "0" : "1", withT ? "1" : "0", withBs ? "1" : "0"].join("|");
    var text = fill(R.texts[textKey], {input_size: given.input_size, hidden_size: given.hidden_size,
                                       proj_size: given.proj_size, num_layers: given.num_layers, T: T, bs: bs});
    el("explain").textContent = text;
    el("label").textContent = text.split("\n")[0];
    var list = document.createElement("ul");
    text.split("\nnotes\n")[1].split("\n").forEach(function (line) {  // explain's notes: one "  * " line each
      var li = document.createElement("li"), code = document.createElement("code");
      code.textContent = line.replace(/^  \* /, "");
      li.appendChild(code);
      list.appendChild(li);
    });
    el("notes").innerHTML = "";
    el("notes").appendChild(list);
  }
  function freeCode(cfg, given, proj, mode, shapes, padded, lengths, T, bs) {  // the numbers: from the table
    var cell = cfg.cell === "1", args = [given.input_size, given.hidden_size];
    if (!cell && cfg.layers !== "1") { args.push("num_layers=" + cfg.layers); }
    if (!cell && cfg.bidirectional === "1") { args.push("bidirectional=True"); }
    if (!cell && cfg.batch_first === "1") { args.push("batch_first=True"); }
    if (proj) { args.push("proj_size=" + given.proj_size); }
    var names = Object.keys(shapes), states = names.filter(function (n) { return /_0$/.test(n); });
    var results = names.filter(function (n) { return n !== "input" && states.indexOf(n) < 0; });
    var lines = ["import torch", "import torch.nn as nn"];
    if (mode === "packed") { lines.push("from torch.nn.utils.rnn import pack_padded_sequence"); }
    lines.push("", "import shapeviz as sv", "", "layer = nn." + kind(cfg) + "(" + args.join(", ") + ")");
    if (mode === "packed") {
      lines.push("padded = torch.randn" + tupleText(padded),
                 "x = pack_padded_sequence(padded, [" + lengths.join(", ") + "]" +
                 (cfg.batch_first === "1" ? ", batch_first=True" : "") +
                 (lengths.every(function (n, i) { return i === 0 || n <= lengths[i - 1]; }) ? "" :
                  ", enforce_sorted=False") + ")  # x.data: " + tupleText(shapes.input));
    } else {
      lines.push("x = torch.randn" + tupleText(shapes.input) + (mode === "unbatched" ? "  # unbatched" : ""));
    }
    states.forEach(function (n) { lines.push(n + " = torch.zeros" + tupleText(shapes[n])); });
    var state = states.length === 1 ? states[0] : "(" + states.join(", ") + ")";
    var out = cell || results.length === 2 ? results.join(", ") :
      results[0] + ", (" + results.slice(1).join(", ") + ")";
    lines.push("sv.check_call(layer, x, " + state + ")", out + " = layer(x, " + state + ")");
    if (mode === "packed") { lines.push("print(output.data.shape, h_n.shape)"); }
    else { lines.push("print(" + results.map(function (n) { return n + ".shape"; }).join(", ") + ")"); }
    lines.push("print(sv.explain(layer" + (cell || mode === "packed" ? "" : ", T=" + T) +
               (mode === "batched" ? ", bs=" + bs : "") + "))");
    return lines.join("\n") + "\n";
  }
  window.svExplorer = {
    load: function (k, data) { cache[k] = data; if (k === wanted) { show(k); } }
  };
  el("fullsize").addEventListener("click", function () {  // the diagram at its own size, scrolling sideways
    var full = el("diagram").classList.toggle("full");
    this.setAttribute("aria-pressed", full ? "true" : "false");
    this.textContent = full ? "Fit the diagram to the page" : "Show the diagram at full size";
  });
  ["config", "drawn"].forEach(function (id) {
    el(id).addEventListener("change", update);
    el(id).addEventListener("submit", function (e) { e.preventDefault(); });
  });
  el("sizes").addEventListener("input", update);
  el("sizes").addEventListener("change", update);
  el("sizes").addEventListener("submit", function (e) { e.preventDefault(); });
  window.addEventListener("hashchange", function () { restore(); update(); });
  restore();
  update();
}());
"""
