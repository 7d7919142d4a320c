"""``refava rephrase``: N rephrasings of every accepted expression of the chosen splits, into tables/rephrasings."""
from __future__ import annotations


import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import StageError
from .checks import distinct_n, only_reorders
from .engine import Backend, Cache, Job, Params, RephraseError, Runner, Template, estimate, load_template, redact
from ..summary import Summary

# USD per million tokens (prompt, completion) for --dry-run estimates; override with --price-in/--price-out
PRICES = {"gpt-3.5-turbo": (0.50, 1.50), "gpt-4o-mini": (0.15, 0.60)}
LOCAL_MODEL = "gemma3-270m"


@dataclass
class RephraseSummary:
    jobs: int
    ok: int
    failed: int
    requests: int
    cached: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds: float
    reasons: dict
    table: str
    checks: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"  {self.jobs} rephrasings: {self.ok} accepted, {self.failed} failed",
               f"  {self.requests} requests sent, {self.cached} answers from the cache, {self.retries} retries",
               f"  tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion, "
               f"cost ${self.cost_usd:.4f}, {self.seconds:.1f} s"]
        for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:10]:
            out.append(f"  failed {n}x: {reason}")
        if self.checks.get("outputs_checked"):
            c = self.checks
            out.append(f"  checks: {c['outputs_checked']} outputs, {100 * c['acceptance_rate']:.0f} % accepted"
                       + "".join(f"; {k} {100 * v:.0f} %" for k, v in sorted(
                           c["rejection_rate_by_reason"].items(), key=lambda kv: -kv[1])[:6]))
        if self.checks.get("distinct_texts") is not None and self.ok:
            c = self.checks
            out.append(f"  accepted: {c['distinct_texts']} distinct texts, distinct-1 {c['distinct_1']:.2f}, "
                       f"distinct-2 {c['distinct_2']:.2f}; {c['reorder_only']} ({100 * c['reorder_only_share']:.1f} %) "
                       f"only reorder the source's words ({c['set_aside_for_reordering']} such outputs were set aside "
                       f"for a fresh sample)")
        return out


def make_backend(ws, *, backend: str | None = None, base_url: str | Sequence[str] | None = None,
                 model: str | None = None, price_in: float | None = None, price_out: float | None = None) -> Backend:
    """The backend from the options, else refava.toml [llm]: local (embedded llama.cpp), openai, or base URLs (one or
    several endpoints serving the same model: requests are spread over them)."""
    cfg = ws.config["llm"]
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    if not urls and cfg.get("base_url"):
        urls = [cfg["base_url"]] if isinstance(cfg["base_url"], str) else list(cfg["base_url"])
    duplicates = sorted({u for u in urls if urls.count(u) > 1})
    if duplicates:
        raise RephraseError(f"--base-url {duplicates[0]} is given twice; give each endpoint once")
    base_url, more = (urls[0], tuple(urls[1:])) if urls else (None, ())
    name = backend or ("base_url" if base_url else cfg.get("backend") or "local")
    if name == "openai":
        key = os.environ.get("OPENAI_API_KEY", "")
        if not key:
            raise RephraseError("backend openai needs OPENAI_API_KEY in the environment (it is never stored); or use "
                                "--backend local, or --base-url for an OpenAI-compatible server")
        model = model or (cfg.get("model") if cfg.get("model") not in (None, "", LOCAL_MODEL) else "gpt-3.5-turbo")
        prices = PRICES.get(model, (0.0, 0.0))
        return Backend("openai", base_url, model, key, price_in if price_in is not None else prices[0],
                       price_out if price_out is not None else prices[1], more)
    if name == "base_url":
        if not base_url:
            raise RephraseError("--backend base_url needs --base-url (or [llm] base_url in refava.toml)")
        return Backend("base_url", base_url, model or cfg.get("model") or "default",
                       os.environ.get("OPENAI_API_KEY", ""), price_in or 0.0, price_out or 0.0, more)
    if name == "local":
        if urls:
            raise RephraseError("--backend local runs its own server: leave out --base-url (or use --backend base_url)")
        return Backend("local", None, LOCAL_MODEL, "", 0.0, 0.0)
    raise RephraseError(f"unknown backend {name!r}; expected local, openai or base_url")


def default_template(backend: Backend) -> str:
    return "fewshot-v3" if backend.name == "local" else "chat-v1"


def jobs_for(ws, splits: Sequence[str], n: int) -> list[Job]:
    """One job per (accepted instance of ``splits``, index 0..n-1), with the instance's expression."""
    from ..splits import accepted_instances
    from ..tables import read_table

    if not ws.table("splits").exists():
        raise StageError(f"{ws.table('splits')} not found: run `refava build-splits` first")
    if not ws.table("annotation_status").exists():
        raise StageError(f"{ws.table('annotation_status')} not found: run `refava annotate check` first "
                         f"(rephrasing needs the accepted expressions)")
    split_of = {r["instance_id"]: r["split"] for r in read_table("splits", ws.table("splits")).to_pylist()}
    known = sorted(set(split_of.values()))
    wanted = set(known) if "all" in splits else set(splits)
    if wanted - set(known):
        raise StageError(f"split(s) {sorted(wanted - set(known))} are not in {ws.table('splits')}: it has "
                         f"{', '.join(known)}")
    text = {r["instance_id"]: r["expression"] for r in
            read_table("annotation_status", ws.table("annotation_status")).to_pylist()}
    instances, _ = accepted_instances(ws)
    chosen = sorted(i.instance_id for i in instances if split_of.get(i.instance_id) in wanted and text.get(i.instance_id))
    by_clip: dict[str, list[str]] = {}
    for iid, expression in sorted(text.items()):
        if expression:
            by_clip.setdefault(iid.rsplit("___", 1)[0], []).append(iid)
    others = {iid: tuple(text[o] for o in by_clip[iid.rsplit("___", 1)[0]] if o != iid) for iid in chosen}
    return [Job(iid, k, text[iid], others[iid]) for iid in chosen for k in range(n)]


def rephrase_workspace(ws, splits: Sequence[str], *, n: int | None = None, backend: Backend,
                       template: Template | None = None,
                       params: Params | None = None, dry_run: bool = False, progress: bool = True,
                       log: Callable[[str], None] = print) -> RephraseSummary | dict:
    """Rephrase the accepted expressions of ``splits``; write tables/rephrasings.parquet and reports/rephrase.json.

    Rows of instances outside this run are kept, so ``--test`` then ``--val`` builds up one table.
    """
    from ..fsutil import write_json_atomic
    from ..progress import bar as _progress
    from ..tables import read_table, write_table

    if params is None:
        params = Params(n=2 if n is None else n, seed=int(ws.config["seeds"]["rephrase"]))
    elif n is not None and n != params.n:
        raise ValueError(f"rephrase_workspace: n={n} disagrees with params.n={params.n}; pass one of them")
    n = params.n
    template = template or load_template(default_template(backend))
    jobs = jobs_for(ws, splits, n)
    cache = Cache(ws.root / "cache" / "rephrase")
    if dry_run:
        return estimate(jobs, backend, template, cache, params)
    if not jobs:
        raise StageError(f"no accepted expressions in split(s) {', '.join(splits)}: nothing to rephrase")
    started = time.perf_counter()
    bar = _progress(total=len(jobs), enabled=progress, desc="rephrase", unit="text")
    local = None
    if backend.name == "local":
        from .local import LocalServer

        local = LocalServer(ws.root / "cache" / "models", log=log)
        base = local.start()
        backend = Backend("local", base, backend.model, "", 0.0, 0.0)
    try:
        runner = Runner(backend, template, cache, params, on_done=lambda _: bar.update(1))
        records = runner.run(jobs)
    finally:
        bar.close()
        if local is not None:
            local.stop()
    keep = []
    done = {(r["instance_id"], r["index"]) for r in records}
    if ws.table("rephrasings").exists():
        keep = [r for r in read_table("rephrasings", ws.table("rephrasings")).to_pylist()
                if (r["instance_id"], r["index"]) not in done]
    rows = sorted(keep + records, key=lambda r: (r["instance_id"], r["index"]))
    for r in rows:                        # kept rows of an older table get it too
        r["only_reorders"] = r["text"] is not None and only_reorders(r["original"], r["text"])
    from ..fsutil import sha256_file

    path = write_table("rephrasings", rows, ws.table("rephrasings"), provenance={
        "stage": "rephrase", "backend": backend.name, "model": backend.model, "template": template.id,
        "template_sha256": template.sha256, "n": n, "temperature": params.temperature, "seed": params.seed,
        "inputs": {name: sha256_file(ws.table(name)) for name in ("splits", "annotation_status")}})
    reasons: dict[str, int] = {}
    for r in records:
        for reason in r["reasons"]:
            head = reason.split(":")[0]
            reasons[head] = reasons.get(head, 0) + 1
    s = runner.stats
    summary = RephraseSummary(len(records), sum(r["status"] == "ok" for r in records),
                              sum(r["status"] == "failed" for r in records), s.requests, s.cached, s.retries,
                              s.prompt_tokens, s.completion_tokens, round(s.cost(backend), 6),
                              time.perf_counter() - started, reasons, str(path))
    summary.checks = {"outputs_checked": s.checked, "outputs_accepted": s.accepted,
                      "acceptance_rate": round(s.accepted / s.checked, 4) if s.checked else None,
                      "rejected_by_reason": dict(sorted(s.rejected.items())),
                      "rejection_rate_by_reason": {k: round(v / s.checked, 4) for k, v in sorted(s.rejected.items())}
                      if s.checked else {}}
    accepted = [r["text"] for r in records if r["status"] == "ok"]
    summary.checks.update({
        "reorder_only": sum(r["only_reorders"] for r in records if r["status"] == "ok"),
        "reorder_only_share": round(sum(r["only_reorders"] for r in records if r["status"] == "ok") / len(accepted), 4)
        if accepted else None,
        "set_aside_for_reordering": s.reordered,
        "distinct_texts": len(set(accepted)), "distinct_1": round(distinct_n(accepted, 1), 4),
        "distinct_2": round(distinct_n(accepted, 2), 4)})
    write_json_atomic(ws.reports_dir / "rephrase.json", {
        **vars(summary), "splits": list(splits), "backend": backend.name, "model": backend.model,
        "base_url": redact(backend.base_url or "", backend.api_key), "template": template.id,
        "endpoints": [redact(u or "api.openai.com", backend.api_key) for u in backend.urls],
        "requests_by_endpoint": dict(sorted(s.by_endpoint.items())),
        "errors": s.errors, "request_seconds": round(s.seconds, 3)})
    return summary


def run(ws, *, splits=("test",), n: int = 2, backend: str | None = None, base_urls=(), model: str | None = None,
        template: str | None = None, params=None, price_in=None, price_out=None, dry_run: bool = False,
        progress: bool = True, log: Callable[[str], None] = print) -> Summary:
    """``refava rephrase``: every accepted expression of ``splits`` rephrased ``n`` times (see
    :func:`rephrase_workspace`); ``dry_run`` counts requests, tokens and cost and sends nothing."""
    import json

    from .engine import load_template

    be = make_backend(ws, backend=backend, base_url=list(base_urls), model=model, price_in=price_in,
                      price_out=price_out)
    tpl = load_template(template or default_template(be))
    result = rephrase_workspace(ws, splits, n=n, backend=be, template=tpl, params=params, dry_run=dry_run,
                                progress=progress, log=log)
    if dry_run:
        return Summary("rephrase", [f"dry run ({be.name}, {be.model}, template {tpl.id}) for split(s) "
                                    f"{', '.join(splits)}:", json.dumps(result, indent=2)])
    return Summary("rephrase", [f"rephrased split(s) {', '.join(splits)} with {be.name} ({be.model}, template "
                                f"{tpl.id}):", *result.lines()],
                   {"table": Path(result.table), "report": ws.reports_dir / "rephrase.json"})
