"""Run one function over many site tasks: in this process, across local processes, or on a
Dask cluster, with a progress bar.

Workers never touch the store: the parent reads every input before and writes every result
after, so no DuckDB connection crosses a process boundary. Local pools still use `spawn`,
because the parent may hold DuckDB and Prophet state that forking would copy half-way.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from tqdm import tqdm

from forecasting.models import quiet_cmdstan

T = TypeVar("T")
R = TypeVar("R")


def map_tasks(
    func: Callable[[T], R],
    tasks: Sequence[T],
    processes: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    desc: str = "fits",
    on_error: Callable[[T, BaseException], R] | None = None,
) -> Iterator[R]:
    """Yield func(task) for every task in completion order. `func` should catch its own
    errors and return them as results; what escapes it (a worker process killed, a lost Dask
    worker) becomes `on_error(task, exc)`, so one failing site never stops the others."""
    bar = tqdm(total=len(tasks), desc=desc, unit="site", file=sys.stderr, disable=not progress)
    try:
        if scheduler:
            yield from _dask(func, tasks, scheduler, bar, on_error)
        elif processes <= 1 or len(tasks) <= 1:
            quiet_cmdstan()
            for task in tasks:
                yield func(task)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(processes, len(tasks)), mp_context=context,
                initializer=quiet_cmdstan,
            ) as pool:
                futures = {pool.submit(func, t): t for t in tasks}
                for future in as_completed(futures):
                    yield _outcome(future, futures[future], on_error)
                    bar.update()
    finally:
        bar.close()


def _outcome(future: object, task: T, on_error: Callable[[T, BaseException], R] | None) -> R:
    try:
        return future.result()  # type: ignore[attr-defined]
    except Exception as exc:
        if on_error is None:
            raise
        return on_error(task, exc)


def _dask(
    func: Callable[[T], R], tasks: Sequence[T], scheduler: str, bar: tqdm,
    on_error: Callable[[T, BaseException], R] | None,
) -> Iterator[R]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "--scheduler needs Dask: pip install 'dask[distributed]'"
        ) from exc
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    with client:
        client.run(quiet_cmdstan)
        # pure=False: two runs over the same inputs must fit again, not reuse a cached result.
        futures = client.map(func, list(tasks), pure=False)
        by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        for future in dask_completed(futures):
            yield _outcome(future, by_key[future.key], on_error)
            bar.update()
