"""Reading sources ahead of the devices: a pool of processes, or of threads.

Decoding and resizing release the GIL only in part. On 16 cores, 16 reading threads decoded about
as fast as one core (an H200 host, 2026-11-26: generate 9,300-10,000 images/s at K=10 against an
engine of 500,000), so with PROCESSES_FROM workers or more, where the sources can be pickled,
they are read by spawned worker processes, each with its own GIL, in chunks of CHUNK sources
(a worker imports no jax: about 0.15 s to start). On 2 cores beside the engine both kinds give
the same (benchmarks/generate.py, Beta-VAE, 8,192 sources: 66% of the engine alone); with the
engine's outputs ready (--host-only) processes read faster, sharing no GIL with the writer (23,800
against 18,700 images/s). Images travel as the loaders' uint8 pixels.
"""

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from typing import Sequence

import numpy as np

from jaxvae.generate import sources as sources_lib

CHUNK = 32  # Sources per task (32: 3,860 sources/s on 2 cores, 8: 3,050, threads: 2,770).
PROCESSES_FROM = 4  # "auto" reads in processes from this many workers on.
PARENT_POLL_S = 0.5
KINDS = ("auto", "processes", "threads")

_SOURCES: sources_lib.Sources | None = None  # In a worker process: the sources it reads.

Read = tuple[np.ndarray | None, str]  # (uint8 [64, 64, 3] image, "") or (None, why unreadable)


def _init_worker(blob: bytes) -> None:
  os.environ["JAX_PLATFORMS"] = "cpu"  # A face aligner in a worker never takes an accelerator.
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle.
  global _SOURCES  # pylint: disable=global-statement
  _SOURCES = pickle.loads(blob)
  threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
  """A worker whose run was killed (SIGKILL: no shutdown reaches it) exits within a second."""
  while os.getppid() == parent:
    time.sleep(PARENT_POLL_S)
  os._exit(1)  # pylint: disable=protected-access


def _read_in_worker(indices: Sequence[int]) -> tuple[list[Read], float]:
  start = time.process_time()
  return [sources_lib.read(_SOURCES, i) for i in indices], time.process_time() - start


def _read_here(sources: sources_lib.Sources, indices: Sequence[int]) -> tuple[list[Read], float]:
  start = time.thread_time()
  return [sources_lib.read(sources, i) for i in indices], time.thread_time() - start


def _spawnable(kind: str) -> bool:
  """Whether spawned workers can start: they re-run the main module's file, if it has one (not
  so for a script read from stdin)."""
  main_file = getattr(sys.modules.get("__main__"), "__file__", None)
  if main_file is None or os.path.exists(main_file):
    return True
  if kind == "processes":
    raise ValueError(f"reading in processes needs the main module's file, and {main_file} is not "
                     "a file (a script read from stdin?): use reader='threads'")
  return False


class Pool:
  """Reads chunks of sources in `workers` processes ("processes"; "auto" with PROCESSES_FROM
  workers or more where the sources pickle) or threads."""

  def __init__(self, sources: sources_lib.Sources, workers: int, kind: str = "auto"):
    if kind not in KINDS:
      raise ValueError(f"reader must be one of {KINDS}, got {kind!r}")
    self.sources, blob = sources, None
    wanted = kind == "processes" or (kind == "auto" and workers >= PROCESSES_FROM)
    if wanted and workers > 1 and _spawnable(kind):
      try:
        blob = pickle.dumps(sources)
      except (pickle.PicklingError, TypeError, AttributeError) as e:
        if kind == "processes":
          raise ValueError(f"these sources cannot be read in processes: {e}") from e
    if blob is None:
      self.kind = "threads"
      self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="read")
    else:
      self.kind = "processes"
      self._pool = concurrent.futures.ProcessPoolExecutor(
          workers, multiprocessing.get_context("spawn"), _init_worker, (blob,))

  def submit(self, indices: Sequence[int]) -> concurrent.futures.Future:
    if self.kind == "threads":
      return self._pool.submit(_read_here, self.sources, list(indices))
    return self._pool.submit(_read_in_worker, list(indices))

  def result(self, future: concurrent.futures.Future) -> tuple[list[Read], float]:
    """What `future` (from submit) read: [Read per index] and the CPU seconds it took."""
    try:
      reads, seconds = future.result()
    except concurrent.futures.process.BrokenProcessPool as e:
      raise RuntimeError(
          "generate's reading processes died (see above); a script that calls generate must keep "
          "its work under `if __name__ == \"__main__\":`, since each reading process imports the "
          "script again (multiprocessing's spawn), or pass reader=\"threads\"") from e
    return reads, seconds

  def close(self) -> None:
    self._pool.shutdown(wait=True, cancel_futures=True)
