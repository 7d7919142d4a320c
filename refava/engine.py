"""How per-movie work runs: in a local process pool, on a Ray cluster, or as one shard of a job array.

The stages whose work splits by movie (``ingest``, ``corrupt``) hand :func:`run_tasks` a list of tasks, one per movie
(a picklable function and its arguments), and get the results back keyed by task.  Each task writes its movie's output
file atomically, with a completion record in the file's own metadata (the inputs' fingerprint, per-clip row
checksums), so a task that is run again with the same inputs returns at once, whatever engine ran it first.  The
tables are committed by the stage from the results, in sorted order: the bytes do not depend on the engine, the
number of workers or the order tasks finished in.

* ``local`` (default): a process pool of ``workers`` processes (spawned, children die with the parent), or the
  calling process when there is one worker or one task.
* ``ray``: one Ray task per movie (``ray.init(address=...)``; ``auto`` joins the cluster of ``ray start``, ``local``
  or none starts a private one on this machine unless the caller already did), retried by Ray when its worker dies
  (``max_retries``); an error raised by the task itself is not retried but reported with its movie.  Workers read and
  write through the workspace's absolute paths, so these must be on a filesystem every node shares.
* shards (``--shard I/N``, for Slurm or any job array): only every N-th movie, starting at the I-th (0-based) of the
  sorted list; the stage then writes no table.  When all N shards are done, a plain run (or ``--merge``) finds every
  movie complete and commits the tables without redoing one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

from .errors import ConfigError, RefavaError

ENGINES = ("local", "ray")
RAY_RETRIES = 3


class EngineError(RefavaError, RuntimeError):
    """A task failed under an engine, or the engine could not start."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence) -> list:
        """The items of this shard: positions index, index + count, ... of ``items`` (sort them first)."""
        return list(items[self.index::self.count])


def parse_shard(text: str | None) -> Shard | None:
    """``"I/N"`` (0 <= I < N) as a :class:`Shard`; None for None.

    >>> parse_shard("1/4")
    Shard(index=1, count=4)
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ConfigError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4 for the first of four shards "
                          f"(with Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    return Shard(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class Engine:
    kind: str = "local"
    workers: int = 0                 # local: processes (0 = one per CPU core); ray: ignored (the cluster decides)
    ray_address: str | None = None

    def __post_init__(self):
        if self.kind not in ENGINES:
            raise ConfigError(f"--engine {self.kind!r}: expected one of {', '.join(ENGINES)}")
        if self.workers < 0:
            raise ConfigError(f"workers: expected >= 0 (0 = one per CPU core), found {self.workers}")


@dataclass
class Task:
    key: Hashable
    fn: Callable
    args: tuple = ()
    kwargs: dict | None = None
    label: str = ""


def run_tasks(tasks: Sequence[Task], engine: Engine = Engine(), *, on_done: Callable[[Task, Any], None] | None = None,
              threads_hint: Callable[[int], dict] | None = None) -> dict:
    """Run every task; return ``{task.key: result}``.  ``on_done`` is called as each one finishes (progress bars).
    ``threads_hint(workers)`` gives extra keyword arguments for every task once the number of workers is known."""
    tasks = list(tasks)
    if not tasks:
        return {}
    if engine.kind == "ray":
        return _run_ray(tasks, engine, on_done, threads_hint)
    workers = engine.workers or min(len(tasks), os.cpu_count() or 1) or 1
    extra = threads_hint(workers) if threads_hint else {}
    results = {}
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            results[task.key] = task.fn(*task.args, **(task.kwargs or {}), **extra)
            if on_done:
                on_done(task, results[task.key])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .procs import pool_initializer

    # spawn, not fork: the parent may be running threads (progress bar, JPEG pools), and forking a process with
    # threads can deadlock the child
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=pool_initializer, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(task.fn, *task.args, **(task.kwargs or {}), **extra): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            results[task.key] = future.result()
            if on_done:
                on_done(task, results[task.key])
    return results


def shard_report_path(reports_dir, stage: str, shard: Shard):
    """Where shard ``shard`` of ``stage`` says what it did (``reports/<stage>-shard-I-of-N.json``)."""
    from pathlib import Path

    return Path(reports_dir) / f"{stage}-shard-{shard.index}-of-{shard.count}.json"


def write_shard_report(reports_dir, stage: str, shard: Shard, record: dict):
    """Write a shard's report (atomically); returns its path."""
    from .fsutil import write_json_atomic

    path = shard_report_path(reports_dir, stage, shard)
    write_json_atomic(path, record)
    return path


def refuse_undone(reports_dir, stage: str, undone: list[tuple[int, str]], total: int, what: str) -> None:
    """A merge before every task is done is refused, naming the tasks (``undone``: (position in the sorted task
    list, label)) and, when the shard reports tell how many shards there are, the shard each belongs to."""
    import re
    from pathlib import Path

    from .errors import StageError

    if not undone:
        return
    counts = {int(m[1]) for p in Path(reports_dir).glob(f"{stage}-shard-*-of-*.json")
              if (m := re.fullmatch(rf"{re.escape(stage)}-shard-\d+-of-(\d+)", p.stem))}
    count = counts.pop() if len(counts) == 1 else None
    shown = ", ".join(f"{label} (shard {n % count}/{count})" if count else label for n, label in undone[:10])
    raise StageError(f"--merge: {len(undone)} of {total} {what} are not done yet: {shown}"
                     f"{' ...' if len(undone) > 10 else ''}; run their shards (or a plain `refava {stage}`, which "
                     f"does them here) and merge again")


def check_stores(stores: dict[str, "os.PathLike"]) -> list[str]:
    """Before a merge: each finished task's output file against the checksums its completion record holds (a
    damaged block or a tampered record is refused, naming the task); one line per problem."""
    from .framestore import check_frame_store

    problems = []
    for label, path in sorted(stores.items()):
        for p in check_frame_store(path):
            problems.append(f"{label}: {p.path}{f' clip {p.clip_id}' if p.clip_id else ''}: {p.kind}: {p.detail}")
    return problems


def refuse_merge(problems: list[str], redo: str) -> None:
    """Raise the merge's refusal when ``problems`` is not empty (``redo``: the command that redoes a task)."""
    if problems:
        shown = "; ".join(problems[:5])
        raise EngineError(f"--merge: {len(problems)} completion record(s) do not agree with their files: {shown}"
                          f"{' ...' if len(problems) > 5 else ''}. Nothing was written; delete those files and rerun "
                          f"their shards (or {redo}), then merge again")


def _ray():
    try:
        import ray
    except ImportError:
        raise EngineError("--engine ray needs Ray: pip install 'refava[ray]' (or pip install ray), on every node")
    return ray


def ensure_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://...``), or start a private one on this
    machine (``local`` or None), unless this process is already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address not in (None, "", "local", "auto"):
        _probe(address)
    try:
        if address in (None, "", "local"):
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:        # ConnectionError, RuntimeError, ValueError from ray.init
        raise EngineError(f"could not start or join the Ray cluster at {address or 'a new local one'}: "
                          f"{str(exc).strip().splitlines()[0][:300]}; start one with `ray start --head` and pass "
                          f"--ray-address auto (or HOST:PORT)") from None


RAY_CONNECT_TIMEOUT_S = 10.0


def _probe(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout_s`` when nothing answers at a Ray ``HOST:PORT`` (``ray.init`` would wait forever)."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--ray-address {address!r}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise EngineError(f"no Ray cluster answers at {hostport} ({exc.strerror or type(exc).__name__} within "
                          f"{timeout_s:.0f} s): start one there with `ray start --head --port {port}`, or pass "
                          f"--ray-address auto on a node of a running cluster (nothing was changed)") from None


def _run_ray(tasks: list[Task], engine: Engine, on_done, threads_hint=None) -> dict:
    ray = _ray()
    ensure_ray(engine.ray_address)
    # one CPU per task, as the local pool's workers when there are several: the same per-task settings
    cpus = max(2, int(ray.cluster_resources().get("CPU", 2)))
    extra = threads_hint(cpus) if threads_hint else {}
    remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES, retry_exceptions=False)(_call)
    pending = {remote.remote(task.fn, task.args, {**(task.kwargs or {}), **extra}): task for task in tasks}
    results = {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    results[task.key] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    if isinstance(cause, RefavaError):
                        raise cause from None
                    raise EngineError(f"{task.label or task.key}: failed on Ray: {type(cause).__name__}: "
                                      f"{str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ''}") \
                        from None
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
                    raise EngineError(f"{task.label or task.key}: its Ray worker died {RAY_RETRIES + 1} times "
                                      f"({type(exc).__name__}); rerun to resume (finished movies are kept)") from None
                if on_done:
                    on_done(task, results[task.key])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return results


def _call(fn, args, kwargs):
    """What a Ray worker runs: the task's function with its arguments (one remote function serves every task)."""
    return fn(*args, **kwargs)
