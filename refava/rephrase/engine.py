"""Rephrasing requests through the official ``openai`` client: templates, a content-addressed cache, bounded
concurrency, retries that honour Retry-After, and checks with fresh samples on failure.

Every request's answer is cached (atomically, one small JSON file per answer) under a key made of the model, the
template's hash, the input text, the rephrasing index, the attempt and the sampling parameters.  A rerun therefore
sends nothing for what was answered before, and an interrupted run loses at most the requests in flight.  The API
key is never written anywhere: not in the cache, the tables, the reports or the messages (``redact``).
"""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

from ..errors import RefavaError
from ..fsutil import write_text_atomic
from .checks import check_rephrasing, clean_output, only_reorders

TEMPLATES = ("chat-v1", "fewshot-v1", "fewshot-v2", "fewshot-v3")


class RephraseError(RefavaError, RuntimeError):
    """The backend cannot be used at all (no key, wrong key, unknown model, server not starting)."""


@dataclass(frozen=True)
class Template:
    id: str
    kind: str                          # chat | completion
    sha256: str
    body: dict

    def messages(self, expression: str) -> list[dict]:
        return [{"role": "system", "content": self.body["system"]},
                {"role": "user", "content": self.body["user"].format(expression=expression)}]

    def prompt(self, expression: str) -> str:
        return self.body["prompt"].format(expression=expression)

    def text_of(self, expression: str) -> str:
        """The whole request text, for token estimates."""
        if self.kind == "chat":
            return " ".join(m["content"] for m in self.messages(expression))
        return self.prompt(expression)


def load_template(name: str) -> Template:
    """A versioned template shipped in refava/rephrase/templates (``chat-v1``, ``fewshot-v2``, ...) or a JSON file path."""
    path = Path(name)
    if path.suffix == ".json" and path.exists():
        raw = path.read_bytes()
        template_id = path.stem
    else:
        if name not in TEMPLATES:
            raise RephraseError(f"unknown prompt template {name!r}; expected one of {', '.join(TEMPLATES)} or a "
                                f"path to a .json template")
        raw = resources.files("refava.rephrase").joinpath("templates", f"{name}.json").read_bytes()
        template_id = name
    body = json.loads(raw)
    if body.get("kind") not in ("chat", "completion"):
        raise RephraseError(f"template {name}: 'kind' must be 'chat' or 'completion', found {body.get('kind')!r}")
    return Template(template_id, body["kind"], hashlib.sha256(raw).hexdigest(), body)


@dataclass(frozen=True)
class Backend:
    """Where requests go. ``api_key`` is kept out of repr, so it cannot leak through logs of this object."""

    name: str                          # openai | base_url | local
    base_url: str | None
    model: str
    api_key: str = field(repr=False, default="")
    price_in: float = 0.0              # USD per million prompt tokens
    price_out: float = 0.0             # USD per million completion tokens
    more_urls: tuple[str, ...] = ()    # further endpoints serving the same model: requests are spread over all

    @property
    def urls(self) -> tuple[str | None, ...]:
        return (self.base_url, *self.more_urls)


@dataclass(frozen=True)
class Params:
    n: int = 2
    temperature: float = 0.8
    seed: int = 0
    max_attempts: int = 6              # fresh samples for an output that fails the checks (or only reorders)
    max_retries: int = 5               # transport retries (429, 5xx, timeouts, broken answers) per request
    timeout_s: float = 60.0
    concurrency: int = 8
    backoff_s: float = 0.5
    backoff_cap_s: float = 20.0


@dataclass(frozen=True)
class Job:
    instance_id: str
    index: int
    text: str
    others: tuple[str, ...] | None = None   # the clip's other people's expressions (checks only, never sent);
                                            # None: the clip is not known


_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{4,}|Bearer\s+[A-Za-z0-9_\-.]{8,})")


def redact(text: str, key: str | None = None) -> str:
    """``text`` with the API key (and anything shaped like one) replaced by ``***``."""
    text = str(text)
    if key:
        text = text.replace(key, "***")
    return _KEY_PATTERN.sub("***", text)


class Cache:
    """Content-addressed answers: ``root/ab/abcdef....json``, each written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(backend: Backend, template: Template, job: Job, attempt: int, params: Params) -> str:
        # keyed by instance too: two instances with the same expression are two requests (two seeds), never one
        # shared answer, so a cached rerun gives each instance the answer its own request got
        material = {"model": backend.model, "template": template.sha256, "text": job.text, "index": job.index,
                    "instance_id": job.instance_id, "attempt": attempt, "temperature": params.temperature,
                    "seed": params.seed, "max_tokens": template.body.get("max_tokens", 60), "format": 2}
        if backend.name == "local":
            # the embedded server evaluates a prompt in two fixed pieces (llama_entry): other logits than in one
            material["evaluation"] = "two-pieces"
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None                # a damaged entry is asked again, and then rewritten

    def put(self, key: str, entry: dict) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(entry, sort_keys=True))


def request_seed(seed: int, job: Job, attempt: int) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{job.instance_id}\x1f{job.index}\x1f{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


@dataclass
class Stats:
    requests: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0               # summed request time (wall clock: the report's, never a table's)
    errors: dict = field(default_factory=dict)
    checked: int = 0                   # outputs that went through the checks (every attempt)
    accepted: int = 0
    rejected: dict = field(default_factory=dict)   # reason -> outputs it rejected
    reordered: int = 0                 # accepted outputs set aside because they only reorder the source's words
    by_endpoint: dict = field(default_factory=dict)  # endpoint -> answers received from it

    def cost(self, backend: Backend) -> float:
        return (self.prompt_tokens * backend.price_in + self.completion_tokens * backend.price_out) / 1e6


class Runner:
    """Runs jobs against one backend with one template; ``run`` returns one record per job."""

    def __init__(self, backend: Backend, template: Template, cache: Cache, params: Params,
                 on_done: Callable[[dict], None] | None = None):
        self.backend, self.template, self.cache, self.params = backend, template, cache, params
        self.stats = Stats()
        self.on_done = on_done
        self._fatal: Exception | None = None

    def _client(self) -> list:
        """One client per endpoint; requests go to the endpoint with the fewest in flight (see ``_pick``)."""
        import openai

        self._inflight = [0] * len(self.backend.urls)
        self._names = [redact(url or "api.openai.com", self.backend.api_key) for url in self.backend.urls]
        return [openai.AsyncOpenAI(base_url=url, api_key=self.backend.api_key or "not-needed", max_retries=0,
                                   timeout=self.params.timeout_s) for url in self.backend.urls]

    def _pick(self, avoid: int | None) -> int:
        """The endpoint with the fewest requests in flight (the lowest index on a tie), other than ``avoid`` (the
        one that just failed) when there is another.  Which endpoint answers never changes the answer's cache key:
        the endpoints serve the same model with the same seeds."""
        return min(range(len(self._inflight)), key=lambda i: (i == avoid, self._inflight[i], i))

    async def _ask(self, clients: list, job: Job, attempt: int) -> dict:
        """One answer from a server (with transport retries, moving to another endpoint after a failure)."""
        import openai

        p = self.params
        seed = request_seed(p.seed, job, attempt)
        last = None
        avoid = None
        for retry in range(p.max_retries + 1):
            if self._fatal is not None:
                raise self._fatal
            started = time.perf_counter()
            at = self._pick(avoid)
            client = clients[at]
            self._inflight[at] += 1
            try:
                if self.template.kind == "chat":
                    response = await client.chat.completions.create(
                        model=self.backend.model, messages=self.template.messages(job.text),
                        temperature=p.temperature, max_tokens=self.template.body.get("max_tokens", 60), seed=seed)
                    text = _first_choice(response).message.content or ""
                else:
                    response = await client.completions.create(
                        model=self.backend.model, prompt=self.template.prompt(job.text), temperature=p.temperature,
                        max_tokens=self.template.body.get("max_tokens", 48), stop=self.template.body.get("stop"),
                        seed=seed)
                    text = _first_choice(response).text or ""
                usage = getattr(response, "usage", None)
                self.stats.requests += 1
                self.stats.by_endpoint[self._names[at]] = self.stats.by_endpoint.get(self._names[at], 0) + 1
                self.stats.seconds += time.perf_counter() - started
                # a server that echoes the key must not get it into the cache or the tables
                return {"raw": redact(text, self.backend.api_key) if self.backend.api_key else text, "model": getattr(response, "model", None) or self.backend.model,
                        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
                        "seed": seed, "retries": retry}
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError,
                    openai.BadRequestError) as exc:
                self._fatal = RephraseError(
                    f"{self.backend.name} at {self.backend.urls[at] or 'api.openai.com'} refused the request "
                    f"({type(exc).__name__}, HTTP {getattr(exc, 'status_code', '?')}): "
                    f"{redact(exc, self.backend.api_key)[:300]}; check the key (OPENAI_API_KEY), the model name "
                    f"({self.backend.model}) and the URL. Answers received so far are cached.")
                raise self._fatal from None
            except (openai.APIStatusError, openai.APITimeoutError, openai.APIConnectionError,
                    openai.APIResponseValidationError, ValueError, KeyError, IndexError, AttributeError) as exc:
                last = exc
                kind = type(exc).__name__
                if isinstance(exc, openai.APIStatusError):
                    kind += f" {exc.status_code}"
                self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
                avoid = at if len(clients) > 1 else None
                if retry == p.max_retries:
                    break
                self.stats.retries += 1
                wait = _retry_after(exc)
                if wait is None:
                    wait = min(p.backoff_cap_s, p.backoff_s * 2 ** retry) * (0.5 + random.random() / 2)
                await asyncio.sleep(min(wait, p.backoff_cap_s * 3))
            finally:
                self._inflight[at] -= 1
        raise _TransportFailure(f"{type(last).__name__}: {redact(last, self.backend.api_key)[:200]} "
                                f"(after {p.max_retries + 1} tries)")

    async def _instance(self, clients: list, jobs: list[Job], gate: asyncio.Semaphore) -> list[dict]:
        """An instance's jobs in index order, each checked against the rephrasings accepted before it."""
        records, accepted = [], []
        for job in jobs:
            record = await self._job(clients, job, gate, tuple(accepted))
            if record["status"] == "ok":
                accepted.append(record["text"])
            records.append(record)
        return records

    async def _job(self, clients: list, job: Job, gate: asyncio.Semaphore,
                   earlier: tuple[str, ...] = ()) -> dict:
        reasons: list[str] = []
        entry = None
        attempts = 0
        fallback = None
        for attempt in range(self.params.max_attempts):
            attempts = attempt + 1
            key = Cache.key(self.backend, self.template, job, attempt, self.params)
            entry = self.cache.get(key)
            if entry is not None:
                self.stats.cached += 1
            else:
                async with gate:
                    try:
                        entry = await self._ask(clients, job, attempt)
                    except _TransportFailure as exc:
                        return self._record(job, None, [f"transport: {exc}"], attempts, None)
                    # written before the slot is freed: at most `concurrency` answers are unsaved at any moment
                    await asyncio.to_thread(self.cache.put, key, entry)     # fsync off the event loop
                self.stats.prompt_tokens += entry["prompt_tokens"]
                self.stats.completion_tokens += entry["completion_tokens"]
            text = clean_output(entry["raw"])
            reasons = check_rephrasing(job.text, text, raw=entry["raw"], others=job.others, earlier=earlier)
            self.stats.checked += 1
            self.stats.accepted += not reasons
            for head in {r.split(":")[0] for r in reasons}:
                self.stats.rejected[head] = self.stats.rejected.get(head, 0) + 1
            if not reasons and only_reorders(job.text, text) and attempt + 1 < self.params.max_attempts:
                # it says nothing new: kept in reserve while a fresh sample may find other words
                self.stats.reordered += 1
                fallback = fallback or (text, attempts, entry)
                continue
            if not reasons:
                return self._record(job, text, [], attempts, entry)
        if fallback is not None:
            return self._record(job, fallback[0], [], attempts, fallback[2])
        return self._record(job, clean_output(entry["raw"]) if entry else None, reasons, attempts, entry)

    def _record(self, job: Job, text: str | None, reasons: list[str], attempts: int, entry: dict | None) -> dict:
        record = {
            "instance_id": job.instance_id, "index": job.index, "original": job.text,
            "text": text if not reasons else None, "rejected_text": text if reasons else None,
            "status": "failed" if reasons else "ok", "reasons": reasons, "attempts": attempts,
            "backend": self.backend.name, "model": (entry or {}).get("model") or self.backend.model,
            "template_id": self.template.id, "template_sha256": self.template.sha256,
            "temperature": self.params.temperature, "seed": (entry or {}).get("seed"),
            "prompt_tokens": (entry or {}).get("prompt_tokens", 0),
            "completion_tokens": (entry or {}).get("completion_tokens", 0),
        }
        if self.on_done:
            self.on_done(record)
        return record

    async def run_async(self, jobs: Sequence[Job]) -> list[dict]:
        gate = asyncio.Semaphore(self.params.concurrency * len(self.backend.urls))     # `concurrency` per endpoint
        clients = self._client()
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.instance_id, []).append(job)
        try:
            tasks = [asyncio.ensure_future(self._instance(clients, sorted(g, key=lambda j: j.index), gate))
                     for g in groups.values()]
            try:
                done = {(r["instance_id"], r["index"]): r for records in await asyncio.gather(*tasks) for r in records}
                return [done[(job.instance_id, job.index)] for job in jobs]
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            for client in clients:
                await client.close()

    def run(self, jobs: Sequence[Job]) -> list[dict]:
        return asyncio.run(self.run_async(jobs))


class _TransportFailure(Exception):
    pass


def _first_choice(response):
    """The first choice of an answer; a 200 without any (a failed request some servers send) is a ValueError,
    retried and, in the end, counted as a failed request, never a crash."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ValueError(f"the server answered without choices ({str(response)[:120]})")
    return choices[0]


def estimate(jobs: Sequence[Job], backend: Backend, template: Template, cache: Cache, params: Params) -> dict:
    """What a run would send (first attempts not in the cache), with token and cost estimates (4 chars/token)."""
    todo = [j for j in jobs if cache.get(Cache.key(backend, template, j, 0, params)) is None]
    prompt = sum(len(template.text_of(j.text)) for j in todo) // 4 + 8 * len(todo)
    completion = sum(len(j.text) for j in todo) * 3 // 8 + 4 * len(todo)
    cost = (prompt * backend.price_in + completion * backend.price_out) / 1e6
    return {"jobs": len(jobs), "requests": len(todo), "cached": len(jobs) - len(todo), "prompt_tokens": prompt,
            "completion_tokens": completion, "cost_usd": round(cost, 4),
            "note": "first attempts only; outputs failing the checks are asked again (up to "
                    f"{params.max_attempts} attempts)"}
