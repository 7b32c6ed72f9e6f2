"""Many merges at once: merge_many() on any concurrent.futures.Executor, and
the `python -m vperfetto.merge --jobs FILE` command line."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Mapping, Optional


@dataclass
class JobResult:
    """What became of one job of merge_many(): its report, or why it failed."""

    index: int                      # the job's position in the jobs given
    job: Any                        # the job as given (merge()'s keyword arguments)
    report: Optional[Any] = None    # a MergeReport when it succeeded
    error: Optional[str] = None     # "ExceptionType: message" when it failed

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        d: dict = {"job": self.index, "ok": self.ok}
        if self.ok:
            from .merge import _report_dict
            d["report"] = _report_dict(self.report)
        else:
            d["error"] = self.error
        return d


def _run_job(job: Mapping[str, Any]):
    """One merge in a worker: (report, None) or (None, error). Never raises for
    what the job holds (a bad job fails alone)."""
    try:
        if not isinstance(job, Mapping):
            raise TypeError(f"a job is a mapping of merge() keyword arguments, not {type(job).__name__}")
        from .merge import merge
        kwargs = dict(job)
        kwargs.setdefault("threads", 1)  # the jobs are the parallelism
        return merge(**kwargs), None
    except Exception as e:  # noqa: BLE001 -- reported per job
        return None, f"{type(e).__name__}: {e}"


def merge_many(jobs: Iterable[Mapping[str, Any]], executor: Optional[cf.Executor] = None, *,
               max_workers: Optional[int] = None,
               on_result: Optional[Callable[[JobResult], None]] = None) -> List[JobResult]:
    """Runs many merges, each job being merge()'s keyword arguments (``host``,
    ``guests``, ``output``, ``time_diff_ns``, ...), and returns one JobResult per
    job, in the jobs' order. A job that fails (a bad input, a bad argument, even
    a worker that dies) is reported with its error; the others go on and the call
    itself does not raise for them.

    ``executor`` is any ``concurrent.futures.Executor``: by default a process
    pool of ``max_workers`` (the CPUs) made for the call and shut down after it.
    An executor of a cluster engine runs the same call unchanged, e.g. Dask's
    ``distributed.Client(...).get_executor()``; it must be able to import
    vperfetto where it runs the jobs, and the paths must be valid there. Each
    merge runs on one thread unless its job says ``threads``. ``on_result``
    is called in this process as each job ends (in the order they end).
    """
    jobs = list(jobs)
    results: List[Optional[JobResult]] = [None] * len(jobs)
    own = executor is None
    if own:
        executor = cf.ProcessPoolExecutor(max_workers=max_workers or os.cpu_count() or 1)
    try:
        futures = {}
        for i, job in enumerate(jobs):
            try:
                futures[executor.submit(_run_job, job)] = i
            except Exception as e:  # noqa: BLE001 -- e.g. a job that cannot be pickled
                results[i] = JobResult(i, job, error=f"{type(e).__name__}: {e}")
                if on_result:
                    on_result(results[i])
        for fut in cf.as_completed(futures):
            i = futures[fut]
            try:
                report, error = fut.result()
            except Exception as e:  # noqa: BLE001 -- the worker died (e.g. BrokenProcessPool)
                report, error = None, f"{type(e).__name__}: {e}"
            results[i] = JobResult(i, jobs[i], report=report, error=error)
            if on_result:
                on_result(results[i])
    finally:
        if own:
            executor.shutdown(wait=True)
    return [r for r in results if r is not None]


def read_jobs(path: str) -> List[Any]:
    """The jobs of a JSON-lines file: one object of merge() keyword arguments per
    line (blank lines and lines starting with # are skipped). A line that is not
    such an object becomes a job that fails with the reason, so the others run."""
    jobs: List[Any] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                job = json.loads(line)
            except ValueError as e:
                job = _BadLine(f"{path}:{n}: not JSON ({e})")
            if not isinstance(job, (dict, _BadLine)):
                job = _BadLine(f"{path}:{n}: a job is a JSON object, not {type(job).__name__}")
            jobs.append(job)
    return jobs


class _BadLine(dict):
    """A line of a jobs file that is no job: it fails with its reason."""

    def __init__(self, reason: str):
        super().__init__(_bad_line=reason)


def _check_line(job):
    if isinstance(job, Mapping) and "_bad_line" in job:
        raise ValueError(job["_bad_line"])


def run_jobs_cli(path: str, workers: int, quiet: bool) -> int:
    """--jobs FILE: one JSON line per job on stdout as each ends, a progress
    line on a terminal, exit status 1 when any job failed."""
    try:
        jobs = read_jobs(path)
    except OSError as e:
        print(f"error: cannot read the jobs file: {e.strerror or e}: {path}", file=sys.stderr)
        return 2
    bad = {i for i, j in enumerate(jobs) if isinstance(j, _BadLine)}
    runnable = [j for i, j in enumerate(jobs) if i not in bad]
    index = [i for i in range(len(jobs)) if i not in bad]
    show = not quiet and sys.stderr.isatty()
    done = failed = 0
    t0 = time.monotonic()

    def emit(r: JobResult) -> None:
        nonlocal done, failed
        done += 1
        failed += not r.ok
        print(json.dumps(r.as_dict()), flush=True)
        if show:
            rate = done / max(time.monotonic() - t0, 1e-9)
            print(f"\rmerging: {done}/{len(jobs)} jobs, {failed} failed, {rate:.1f} jobs/s",
                  end="", file=sys.stderr, flush=True)

    for i in sorted(bad):
        try:
            _check_line(jobs[i])
        except ValueError as e:
            emit(JobResult(i, None, error=f"ValueError: {e}"))

    def renumber(r: JobResult) -> None:
        r.index = index[r.index]
        emit(r)

    merge_many(runnable, max_workers=workers or None, on_result=renumber)
    if show:
        print(file=sys.stderr)
    return 1 if failed else 0
