"""``refava rephrase``."""
from __future__ import annotations


import click

from .root import cli, load_workspace


@cli.command("rephrase")
@click.option("--test", "splits", flag_value="test", multiple=True, help="Rephrase the test split (the default).")
@click.option("--val", "splits", flag_value="val", multiple=True, help="Rephrase the val split.")
@click.option("--split", "splits", multiple=True, help="Rephrase this split (repeatable).")
@click.option("--all", "splits", flag_value="all", multiple=True, help="Rephrase every split.")
@click.option("-n", "--num", "n", default=2, show_default=True, help="Rephrasings per expression (the paper: 2).")
@click.option("--backend", type=click.Choice(["local", "openai", "base_url"]),
              help="local: embedded llama.cpp with Gemma 3 270M (no key, no network); openai: api.openai.com with "
                   "OPENAI_API_KEY; base_url: any OpenAI-compatible server. Default: [llm] in refava.toml.")
@click.option("--base-url", "base_urls", multiple=True,
              help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, llama.cpp, ...); repeat it for "
                   "several servers of the same model: requests go to the one with the fewest in flight, and a "
                   "failed request is retried on another.")
@click.option("--model", help="Model name (default: gpt-3.5-turbo for openai, as in the paper).")
@click.option("--template", help="Prompt template: chat-v1 (chat models) or fewshot-v3 (base models, the local "
                                 "default; fewshot-v1/v2 are kept for reruns), or a .json file.")
@click.option("--temperature", default=0.8, show_default=True, type=float)
@click.option("--seed", type=int, help="Seed sent with each request where supported (default: [seeds] rephrase).")
@click.option("--concurrency", default=8, show_default=True, help="Requests in flight at once, per endpoint.")
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, help="Seconds per request.")
@click.option("--max-attempts", default=6, show_default=True,
              help="Fresh samples for an output failing the checks (an accepted output that only reorders the "
                   "source's words is kept in reserve while attempts remain).")
@click.option("--max-retries", default=5, show_default=True, help="Retries per request on 429, 5xx, timeouts.")
@click.option("--price-in", type=float, help="USD per million prompt tokens, for estimates (default: known models).")
@click.option("--price-out", type=float, help="USD per million completion tokens.")
@click.option("--dry-run", is_flag=True, help="Count the requests and estimate tokens and cost; send nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def rephrase_cmd(ctx, splits, n, backend, base_urls, model, template, temperature, seed, concurrency, timeout_s,
                 max_attempts, max_retries, price_in, price_out, dry_run, no_progress):
    """Rephrase every accepted expression of a split N times with an LLM, as in the RAVAR robustness study.

    \b
    Each output is checked (not empty, not a copy, not a refusal, one sentence, sensible length, no action
    words, gender, position and colour words kept); a failing one is asked again with a fresh sample, then
    recorded as failed with its reasons. Answers are cached in cache/rephrase/ by (model, prompt, text, index,
    attempt, parameters): a rerun sends nothing for what is cached, and an interrupted run loses at most the
    requests in flight. Writes tables/rephrasings.parquet (one row per instance and index) and
    reports/rephrase.json (tokens, cost, failures).
    \b
    Examples:
      refava rephrase --test                             # embedded local model, no key needed
      OPENAI_API_KEY=... refava rephrase --val --test --backend openai --dry-run
      refava rephrase --test --base-url http://127.0.0.1:8000/v1 --model my-model --template chat-v1
      refava rephrase --all --base-url http://gpu1:8000/v1 --base-url http://gpu2:8000/v1 --concurrency 32
    """
    from ..rephrase.engine import Params
    from ..rephrase.stage import run

    ws = load_workspace(ctx, "rephrase")
    params = Params(n=n, temperature=temperature, seed=int(ws.config["seeds"]["rephrase"] if seed is None else seed),
                    max_attempts=max_attempts, max_retries=max_retries, timeout_s=timeout_s, concurrency=concurrency)
    click.echo(run(ws, splits=tuple(dict.fromkeys(splits)) or ("test",), n=n, backend=backend, base_urls=base_urls,
                   model=model, template=template, params=params, price_in=price_in, price_out=price_out,
                   dry_run=dry_run, progress=not no_progress, log=click.echo).text())
