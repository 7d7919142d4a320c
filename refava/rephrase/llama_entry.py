"""``python -m refava.rephrase.llama_entry ARGS``: llama.cpp's OpenAI-compatible server (``llama_cpp.server``, same
arguments) with two changes that the local backend needs.

1. Every prompt is evaluated in the same two pieces, whatever came before it.  The stock server reuses the longest
   prompt prefix of the previous request, and a prompt evaluated in other pieces gives slightly other logits, so
   the answer to one request (same prompt, same seed) depended on which request came before it: a resumed run then
   wrote other rephrasings than an uninterrupted one.  Here the first piece is the prompt up to its last blank line
   (a few-shot template's examples: the same for every request), evaluated alone from an empty cache, and the
   second is the rest.  The first piece's cache is kept for the next request with the same examples, so only the
   expression is evaluated per request (about 3x faster on the sample's few-shot prompt), and the answer still
   depends on the request alone: the cached piece holds exactly what evaluating it alone gives.
2. A watchdog ends the server when the process that started it is gone (beside ``PR_SET_PDEATHSIG``, which the
   parent asks for; see :mod:`refava.procs`).
"""
from __future__ import annotations

import os
import threading
import time


def split_point(tokens, pieces) -> int:
    """Where a prompt's first piece ends: after its last token holding a blank line, if anything follows it; else 0
    (the whole prompt is one piece).  ``pieces``: the token ids' texts, in order."""
    for i in range(len(tokens) - 2, -1, -1):
        if "\n\n" in pieces[i]:
            return i + 1
    return 0


def _fixed_pieces_per_request() -> None:
    import llama_cpp

    generate = llama_cpp.Llama.generate

    def generate_in_fixed_pieces(self, tokens, *args, **kwargs):
        tokens = list(tokens)
        pieces = [self.detokenize([t]).decode("utf-8", "replace") for t in tokens]
        cut = split_point(tokens, pieces)
        kept = getattr(self, "_refava_first_piece", None)
        if cut and kept == tuple(tokens[:cut]) and self.n_tokens >= cut and self._ctx.kv_cache_seq_rm(-1, cut, -1):
            self.n_tokens = cut                   # the first piece as evaluated alone; what followed it is gone
        else:
            self.reset()                          # n_tokens = 0: nothing of the previous request is reused
            self._refava_first_piece = None
            if cut:
                self.eval(tokens[:cut])
                self._refava_first_piece = tuple(tokens[:cut])
        # the stock prefix match now finds exactly the first piece (or nothing) and evaluates the rest in one piece
        return generate(self, tokens, *args, **kwargs)

    llama_cpp.Llama.generate = generate_in_fixed_pieces


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="refava-parent-watchdog", daemon=True).start()


def main() -> None:
    _watch_parent(os.getppid())
    _fixed_pieces_per_request()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
