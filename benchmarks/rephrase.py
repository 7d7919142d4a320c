"""Rephrasing throughput: 1,000 expressions against a local OpenAI-compatible endpoint that answers after 200 ms.

With concurrency 16 the ideal wall time is 1,000 x 0.2 s / 16 = 12.5 s; printed is the measured wall time divided
by it (target <= 1.3), then a second run over the same expressions, which must send zero requests (all cached).
``--endpoints K`` spreads the requests over K such servers (concurrency per endpoint: ideal time / K); at RefAVA's
size: ``--n 36630 --endpoints 2 --latency 0.05 --concurrency 32``.
The endpoint is the test suite's fake server (tests/rephrase/fake_openai.py); the client is the official openai
package, as in `refava rephrase`.

    python benchmarks/rephrase.py [--n 1000] [--latency 0.2] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rephrase.fake_openai import FakeOpenAI  # noqa: E402

from refava.rephrase.engine import Backend, Cache, Job, Params, Runner, load_template  # noqa: E402

COLOURS = ["grey", "red", "blue", "green", "white", "black", "brown", "yellow"]
PEOPLE = ["man", "woman", "boy", "girl", "old man", "young woman"]
PLACES = ["on the left", "on the right", "in the middle", "at the back", "in the front"]
CLOTHES = ["vest", "coat", "shirt", "dress", "hat", "jacket"]


def expressions(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(f"the {PEOPLE[i % 6]} in a {COLOURS[i // 6 % 8]} {CLOTHES[i // 48 % 6]} {PLACES[i // 288 % 5]} "
                   f"number {i}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight per endpoint")
    ap.add_argument("--endpoints", type=int, default=1, help="servers of the same model")
    args = ap.parse_args(argv)
    jobs = [Job(f"bench___{i:05d}___0", 0, t) for i, t in enumerate(expressions(args.n))]
    ideal = args.n * args.latency / (args.concurrency * args.endpoints)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        servers = [stack.enter_context(FakeOpenAI(latency_s=args.latency)) for _ in range(args.endpoints)]
        server = servers[0]

        def runner():
            return Runner(Backend("base_url", server.base_url, "fake", "",
                                  more_urls=tuple(s.base_url for s in servers[1:])),
                          load_template("chat-v1"), Cache(Path(tmp) / "cache"),
                          Params(n=1, concurrency=args.concurrency, timeout_s=30))
        first = runner()
        start = time.perf_counter()
        records = first.run(jobs)
        wall = time.perf_counter() - start
        ok = sum(r["status"] == "ok" for r in records)
        print(f"{args.n} expressions, {args.latency * 1000:.0f} ms per answer, {args.endpoints} endpoint(s), "
              f"concurrency {args.concurrency} per endpoint")
        print(f"first run : {wall:.2f} s, ideal {ideal:.2f} s, ratio {wall / ideal:.2f} (target <= 1.3); "
              f"{first.stats.requests} requests, {ok} accepted; per endpoint: "
              + ", ".join(str(v) for _, v in sorted(first.stats.by_endpoint.items())))
        second = runner()
        start = time.perf_counter()
        second.run(jobs)
        print(f"second run: {time.perf_counter() - start:.2f} s, {second.stats.requests} requests "
              f"({second.stats.cached} answers from the cache)")
        return 0 if wall / ideal <= 1.3 and second.stats.requests == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
