"""``python -m refava.rephrase.llama_entry ARGS``: llama.cpp's OpenAI-compatible server (``llama_cpp.server``, same
arguments) with two changes that the local backend needs.

1. Every request is evaluated from an empty KV cache.  The stock server reuses the longest prompt prefix of the
   previous request, and a prompt evaluated in other pieces gives slightly other logits, so the answer to one
   request (same prompt, same seed) depended on which request came before it: a resumed run then wrote other
   rephrasings than an uninterrupted one.  From an empty cache the answer depends on the request alone.
2. A watchdog ends the server when the process that started it is gone (beside ``PR_SET_PDEATHSIG``, which the
   parent asks for; see :mod:`refava.procs`).
"""
from __future__ import annotations

import os
import threading
import time


def _fresh_cache_per_request() -> None:
    import llama_cpp

    generate = llama_cpp.Llama.generate

    def generate_from_empty_cache(self, tokens, *args, **kwargs):
        self.reset()                          # n_tokens = 0: no prefix of the previous request is reused
        return generate(self, tokens, *args, **kwargs)

    llama_cpp.Llama.generate = generate_from_empty_cache


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="refava-parent-watchdog", daemon=True).start()


def main() -> None:
    _watch_parent(os.getppid())
    _fresh_cache_per_request()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
