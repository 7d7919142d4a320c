"""``refava browse``: a self-contained static site to look through every instance of a workspace.

``reports/browse/`` holds ``index.html`` (the page: no server, no network, opens from disk), ``rows.js`` (every
instance as compact JSON: ids, split, status and reasons, expression, rephrasings, actions, box, corrupted
versions) and ``img/`` (each clip's keyframe once, and per corruption setting its corrupted keyframe, scaled to at
most ``THUMB_WIDTH`` px wide).  The page draws the box over the keyframe (in percent of the image, so it stays
exact at any size), shows the corrupted versions side by side, filters by split, action, status, movie and text,
and renders one page of ``PAGE_ROWS`` rows at a time, so it stays fast at RefAVA's 36,630 rows.  Filters live in
the URL (``index.html#split=test&status=accepted&action=stand``), so a view can be shared.

``refava browse --serve`` also serves the folder on 127.0.0.1.
"""
from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .framestore import DamagedFrameStoreError, clean_path, corrupted_path, read_keyframes
from .io import output_folder

THUMB_WIDTH = 480
PAGE_ROWS = 48


@dataclass
class BrowseSummary:
    out: Path
    rows: int
    images: int
    corrupted_images: int
    missing_keyframes: int
    damaged_stores: list[str]


def _thumb(data: bytes) -> bytes:
    """A keyframe JPEG at most THUMB_WIDTH wide (the stored bytes when already small enough)."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return data
    h, w = image.shape[:2]
    if w <= THUMB_WIDTH:
        return data
    small = cv2.resize(image, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else data


def build_site(ws, out: str | os.PathLike | None = None, *, log: Callable[[str], None] = print,
               progress: bool = True) -> BrowseSummary:
    """Write the browser for workspace ``ws`` to ``out`` (default ``reports/browse``), atomically."""
    from .ava import default_label_map
    from .progress import bar as _progress
    from .tables import read_table

    out = Path(out) if out is not None else ws.root / "reports" / "browse"
    damaged: list[str] = []
    instances = read_table("instances", ws.table("instances")).to_pylist()
    status = {}
    if ws.table("annotation_status").exists():
        status = {r["instance_id"]: r for r in read_table("annotation_status", ws.table("annotation_status")).to_pylist()}
    split_of = {}
    if ws.table("splits").exists():
        split_of = {r["instance_id"]: r["split"] for r in read_table("splits", ws.table("splits")).to_pylist()}
    rephrased: dict[str, list] = defaultdict(list)
    if ws.table("rephrasings").exists():
        for r in sorted(read_table("rephrasings", ws.table("rephrasings")).to_pylist(),
                        key=lambda r: (r["instance_id"], r["index"])):
            rephrased[r["instance_id"]].append([r["text"] or r["rejected_text"] or "", r["status"], r["reasons"]])
    settings: dict[str, set] = defaultdict(set)          # setting -> clip ids
    if ws.table("corruptions").exists():
        for r in read_table("corruptions", ws.table("corruptions")).to_pylist():
            settings[r["configuration"]].add(r["clip_id"])
    labels = default_label_map()
    ids = sorted(labels)
    index = {a: i for i, a in enumerate(ids)}

    with output_folder(out, protected=ws.protected_paths(), what="browser") as tmp:
        (tmp / "img").mkdir()
        by_movie: dict[str, set] = defaultdict(set)
        for inst in instances:
            by_movie[inst["video_id"]].add(inst["clip_id"])
        bar = _progress(total=len(by_movie), enabled=progress, desc="browse", unit="movie")
        have: dict[str, set] = defaultdict(set)             # "clean" / setting -> clip ids with an image
        images = corrupted = 0
        for video in sorted(by_movie):
            sources = [("clean", clean_path(ws.root, video), by_movie[video])]
            sources += [(s, corrupted_path(ws.root, s, video), by_movie[video] & clips)
                        for s, clips in sorted(settings.items())]
            for name, path, wanted in sources:
                if not wanted or not path.exists():
                    continue
                folder = tmp / "img" / ("" if name == "clean" else name)
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    keyframes = read_keyframes(path, wanted)
                except DamagedFrameStoreError as exc:
                    damaged.append(str(exc))
                    continue
                for clip_id, data in keyframes.items():
                    (folder / f"{clip_id}.jpg").write_bytes(_thumb(data))
                    have[name].add(clip_id)
                    if name == "clean":
                        images += 1
                    else:
                        corrupted += 1
            bar.update(1)
        bar.close()
        rows = []
        for inst in sorted(instances, key=lambda r: (r["video_id"], r["timestamp"], r["person_id"])):
            st = status.get(inst["instance_id"], {})
            clip = inst["clip_id"]
            rows.append([inst["instance_id"], inst["video_id"], inst["timestamp"], inst["person_id"],
                         split_of.get(inst["instance_id"], ""), st.get("status", "not annotated"),
                         list(st.get("reasons") or []), st.get("expression") or "",
                         rephrased.get(inst["instance_id"], []), [index[a] for a in inst["action_ids"]],
                         [round(v, 4) for v in inst["box_xyxy"]], clip if clip in have["clean"] else "",
                         [s for s in sorted(settings) if clip in have[s]], list(st.get("annotators") or []),
                         st.get("verified")])
        data = {"fields": ["id", "movie", "second", "person", "split", "status", "reasons", "expression",
                           "rephrasings", "actions", "box", "image", "corrupted", "annotators", "verified"],
                "actions": [labels[i].name for i in ids], "settings": sorted(settings), "rows": rows,
                "workspace": ws.root.name, "page_rows": PAGE_ROWS}
        (tmp / "rows.js").write_text("window.REFAVA = " + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                                     + ";\n", encoding="utf-8")
        (tmp / "index.html").write_text(PAGE.replace("{{title}}", html.escape(f"RefAVA browser: {ws.root.name}")),
                                        encoding="utf-8")
    missing = sum(1 for r in rows if not r[11])
    return BrowseSummary(out.resolve(), len(rows), images, corrupted, missing, damaged)


def serve(folder: Path, port: int = 0, log: Callable[[str], None] = print) -> None:
    """Serve ``folder`` on 127.0.0.1 until interrupted."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    from .errors import ConfigError

    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(folder)))
    except OSError as exc:
        raise ConfigError(f"cannot serve on 127.0.0.1:{port} ({exc.strerror or exc}): another program uses that "
                          f"port; pass --port with a free one (--port 0 picks any). The site is written: "
                          f"{folder / 'index.html'}") from None
    log(f"serving {folder} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 12px;z-index:2}
header h1{font-size:16px;margin:0 0 6px}
header label{margin-right:10px}
select,input{font:inherit;margin-left:4px}
#count{font-weight:600;margin-left:8px}
#pager button{margin:0 4px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:10px;padding:10px}
.row{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.row h2{font-size:13px;margin:0 0 4px;font-family:monospace}
.views{display:flex;gap:6px;flex-wrap:wrap}
.view{position:relative;display:inline-block;width:200px}
.view img{width:100%;display:block}
.view .box{position:absolute;border:2px solid #ff2d2d;box-sizing:border-box;pointer-events:none}
.view .tag{position:absolute;left:0;top:0;background:rgba(0,0,0,.6);color:#fff;font-size:11px;padding:1px 4px}
.noimg{width:200px;height:124px;background:#ddd;display:flex;align-items:center;justify-content:center;color:#666}
.expr{font-size:15px;margin:6px 0 2px}
.st{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#ddd}
.st.accepted{background:#c8f0c8}.st.conflict,.st.needs_revision{background:#f6c8c8}
.st.pending_verification{background:#f6ebc0}
.acts{color:#444;font-size:12px}
.reph li.failed{color:#a33}
small{color:#666}
</style></head><body>
<header><h1>{{title}}</h1>
<label>split<select id="f-split"><option value="">all</option></select></label>
<label>status<select id="f-status"><option value="">all</option></select></label>
<label>action<select id="f-action"><option value="">all</option></select></label>
<label>movie<select id="f-movie"><option value="">all</option></select></label>
<label>text<input id="f-text" type="search" placeholder="words in the expression"></label>
<span id="count"></span>
<span id="pager"><button id="prev">&larr;</button><span id="page"></span><button id="next">&rarr;</button></span>
</header>
<main id="rows"></main>
<script src="rows.js"></script>
<script>
(function () {
  const D = window.REFAVA, F = {};
  D.fields.forEach((name, i) => F[name] = i);
  const rows = D.rows, per = D.page_rows;
  const $ = (id) => document.getElementById(id);
  const uniq = (k) => Array.from(new Set(rows.map(r => r[F[k]]))).sort();
  function fill(id, values, label) {
    const s = $(id);
    values.forEach(v => { const o = document.createElement("option"); o.value = v; o.textContent = label ? label(v) : v; s.appendChild(o); });
  }
  fill("f-split", uniq("split").filter(v => v !== ""));
  fill("f-status", uniq("status"));
  fill("f-movie", uniq("movie"));
  fill("f-action", D.actions.map((_, i) => String(i)), (v) => D.actions[+v]);
  let state = {split: "", status: "", action: "", movie: "", text: "", page: 0};
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    for (const k of ["split", "status", "movie", "text"]) state[k] = p.get(k) || "";
    const a = p.get("action") || "";
    state.action = a === "" ? "" : (/^\d+$/.test(a) ? a : String(D.actions.indexOf(a)));
    state.page = Math.max(0, (+p.get("page") || 1) - 1);
    $("f-split").value = state.split; $("f-status").value = state.status; $("f-action").value = state.action;
    $("f-movie").value = state.movie; $("f-text").value = state.text;
  }
  function writeHash() {
    const p = new URLSearchParams();
    for (const k of ["split", "status", "movie", "text"]) if (state[k]) p.set(k, state[k]);
    if (state.action !== "") p.set("action", D.actions[+state.action]);
    if (state.page) p.set("page", state.page + 1);
    history.replaceState(null, "", "#" + p.toString());
  }
  function matches(r) {
    if (state.split && r[F.split] !== state.split) return false;
    if (state.status && r[F.status] !== state.status) return false;
    if (state.movie && r[F.movie] !== state.movie) return false;
    if (state.action !== "" && r[F.actions].indexOf(+state.action) < 0) return false;
    if (state.text && r[F.expression].toLowerCase().indexOf(state.text.toLowerCase()) < 0) return false;
    return true;
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]); }
  function view(src, box, tag) {
    if (!src) return '<div class="noimg">no keyframe stored</div>';
    const [x1, y1, x2, y2] = box;
    const style = `left:${(100 * x1).toFixed(3)}%;top:${(100 * y1).toFixed(3)}%;width:${(100 * (x2 - x1)).toFixed(3)}%;height:${(100 * (y2 - y1)).toFixed(3)}%`;
    return `<span class="view" data-tag="${esc(tag)}"><img loading="lazy" src="${esc(src)}" alt="${esc(tag)}"><span class="box" style="${style}"></span><span class="tag">${esc(tag)}</span></span>`;
  }
  function card(r) {
    const clip = r[F.image], box = r[F.box];
    let views = view(clip ? `img/${clip}.jpg` : "", box, "clean");
    for (const s of r[F.corrupted]) views += view(`img/${s}/${clip}.jpg`, box, s);
    const acts = r[F.actions].map(a => D.actions[a]).join(", ");
    const reasons = r[F.reasons].length ? ` <small>(${esc(r[F.reasons].join(", "))})</small>` : "";
    const reph = r[F.rephrasings].map(([t, st, why]) => `<li class="${st === "ok" ? "ok" : "failed"}">${esc(t)}${st === "ok" ? "" : ` <small>[${esc(st)}: ${esc(why.join(", "))}]</small>`}</li>`).join("");
    const who = r[F.annotators].length ? ` <small>by ${esc(r[F.annotators].join(", "))}${r[F.verified] ? ", verified" : ""}</small>` : "";
    return `<div class="row" data-id="${esc(r[F.id])}"><h2>${esc(r[F.id])} <small>${esc(r[F.split] || "no split")}</small></h2>
      <div class="views">${views}</div>
      <div class="expr">${r[F.expression] ? "&ldquo;" + esc(r[F.expression]) + "&rdquo;" : "<small>no expression</small>"}</div>
      <div><span class="st ${esc(r[F.status])}">${esc(r[F.status])}</span>${reasons}${who}</div>
      <div class="acts">${esc(acts)}</div>${reph ? `<ul class="reph">${reph}</ul>` : ""}</div>`;
  }
  let shown = [];
  function render() {
    const t0 = performance.now();
    shown = rows.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / per));
    state.page = Math.min(state.page, pages - 1);
    const part = shown.slice(state.page * per, (state.page + 1) * per);
    $("rows").innerHTML = part.map(card).join("");
    $("count").textContent = `${shown.length.toLocaleString("en")} of ${rows.length.toLocaleString("en")} instances`;
    $("page").textContent = `page ${state.page + 1} / ${pages}`;
    $("prev").disabled = state.page === 0; $("next").disabled = state.page >= pages - 1;
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    document.body.dataset.shown = shown.length;
  }
  function changed() {
    state.split = $("f-split").value; state.status = $("f-status").value; state.action = $("f-action").value;
    state.movie = $("f-movie").value; state.text = $("f-text").value.trim(); state.page = 0;
    writeHash(); render();
  }
  for (const id of ["f-split", "f-status", "f-action", "f-movie"]) $(id).addEventListener("change", changed);
  $("f-text").addEventListener("input", changed);
  $("prev").addEventListener("click", () => { state.page--; writeHash(); render(); window.scrollTo(0, 0); });
  $("next").addEventListener("click", () => { state.page++; writeHash(); render(); window.scrollTo(0, 0); });
  window.addEventListener("hashchange", () => { readHash(); render(); });
  readHash(); render();
})();
</script></body></html>
"""
