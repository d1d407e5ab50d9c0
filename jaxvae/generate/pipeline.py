"""The streaming loop of --mode=generate: host workers read, the devices compute, a thread writes.

Sources are read and preprocessed by a pool of processes, or of threads (jaxvae.generate.readers),
in chunks, at most `window` chunks ahead of the devices, as uint8 pixels. Each shard's readable
sources are cut into fixed-size batches starting at the shard's first source (the last one
padded), so a shard's batches are the same whichever process or run computes it. The engine
(encode, K variations, post-processing, uint8 conversion) is one compiled call per batch,
dispatched asynchronously; a writer thread fetches its results, encodes the records and hands each
shard, once its last batch is written, to a pool that commits `commits_at_once()` shards at a
time. At most `QUEUE` batches wait for the writer: memory is bounded by batch size and K.
"""

import collections
import concurrent.futures
import itertools
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import numpy as np

from jaxvae import sampling
from jaxvae.generate import keys as keys_lib
from jaxvae.generate import manifest as manifest_lib
from jaxvae.generate import readers
from jaxvae.generate import shards as shards_lib
from jaxvae.generate import sources as sources_lib

QUEUE = 2  # Batches computed or in flight ahead of the writer.
PROGRESS_EVERY_S = 10.0


def commits_at_once() -> int:
  """Shards committed at once: one's hashing overlaps another's fsync, and on many cores (an
  accelerator's host, where shards come fast) hashing shards in parallel keeps up with them."""
  return max(2, min(8, (os.cpu_count() or 1) // 4))


class Job(NamedTuple):
  """What one process generates."""
  root: str  # output folder
  sources: sources_lib.Sources
  shards: list[int]  # the shard indices this process writes, in order
  num_shards: int
  per_shard: int  # sources per shard
  layout: shards_lib.Layout
  batch_size: int
  num_variations: int
  seed: int
  workers: int  # reading processes or threads (>= 1)
  reader: str  # readers.KINDS


class Batch(NamedTuple):
  shard: int
  entries: list[tuple[int, str]]  # (source index, "" or why it is unreadable), in source order
  images: np.ndarray | None  # [batch_size, 64, 64, 3] uint8: readable ones, then zeros
  count: int  # readable images
  last: bool  # the shard's last batch


class Stats:
  """Counters of this process's run (seconds are per stage, summed over threads)."""

  def __init__(self, total_records: int, log: Callable[[str], None], start: float | None = None):
    self.total, self.log = total_records, log
    self.records = self.sources = self.skipped = self.shards = 0
    self.seconds = collections.Counter()
    self.start = time.perf_counter() if start is None else start
    self.last_log = time.perf_counter()
    self._lock = threading.Lock()

  def add(self, stage: str, seconds: float) -> None:
    with self._lock:
      self.seconds[stage] += seconds

  def committed(self, shard: int) -> None:
    with self._lock:
      self.shards += 1
    self.report(shard, force=True)

  def rate(self) -> float:
    return self.records / max(time.perf_counter() - self.start, 1e-9)

  def report(self, shard: int | None = None, force: bool = False) -> None:
    now = time.perf_counter()
    if not force and now - self.last_log < PROGRESS_EVERY_S:
      return
    self.last_log, rate = now, self.rate()
    left = max(self.total - self.records, 0) / rate if rate else float("nan")
    what = f"shard {shard} committed; " if shard is not None else ""
    self.log(f"[generate] {what}{self.shards} shards, {self.records}/{self.total} images, "
             f"{rate:.0f} images/s, ETA {_duration(left)}")

  def summary(self) -> dict[str, Any]:
    seconds = time.perf_counter() - self.start
    return {"records": self.records, "sources": self.sources, "skipped": self.skipped,
            "shards": self.shards, "seconds": seconds, "images_per_s": self.records / seconds,
            "stage_seconds": {k: round(v, 3) for k, v in sorted(self.seconds.items())}}


def _duration(s: float) -> str:
  if s != s:
    return "?"
  return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else \
      f"{int(s // 60)}m{int(s % 60):02d}s"


def _decoded(job: Job, stats: Stats) -> Iterator[tuple[int, int, np.ndarray | None, str]]:
  """(shard, source index, image or None, reason) in order, read ahead in chunks by a pool."""
  n = len(job.sources.ids)
  items = ((s, i) for s in job.shards
           for i in range(s * job.per_shard, min((s + 1) * job.per_shard, n)))
  chunks = iter(lambda: list(itertools.islice(items, readers.CHUNK)), [])
  window = -(-(2 * job.batch_size) // readers.CHUNK) + job.workers  # Chunks in flight.
  pool = readers.Pool(job.sources, job.workers, job.reader)
  pending: collections.deque = collections.deque()
  try:
    for chunk in chunks:
      pending.append((chunk, pool.submit([i for _, i in chunk])))
      while len(pending) >= window or (pending and pending[0][1].done()):
        yield from _take(pool, pending, stats)
    while pending:
      yield from _take(pool, pending, stats)
  finally:
    pool.close()


def _take(pool: readers.Pool, pending: collections.deque, stats: Stats):
  chunk, future = pending.popleft()
  reads, seconds = pool.result(future)
  stats.add(f"read ({pool.kind}, CPU)", seconds)
  for (s, i), (image, reason) in zip(chunk, reads):
    yield s, i, image, reason


def batches(job: Job, stats: Stats) -> Iterator[Batch]:
  """Fixed-size batches of each shard's readable sources; skipped ones ride along."""
  n, size = len(job.sources.ids), job.batch_size
  entries: list = []
  images: list = []
  for shard, index, image, reason in _decoded(job, stats):
    entries.append((index, reason))
    if image is not None:
      images.append(image)
    last = index == min((shard + 1) * job.per_shard, n) - 1
    if last or len(images) == size:
      padded = None
      if images:
        padded = np.zeros((size, *images[0].shape), np.uint8)
        padded[:len(images)] = images
      yield Batch(shard, entries, padded, len(images), last)
      entries, images = [], []


class Writer(threading.Thread):
  """Fetches each batch's results, writes its records, commits shards; errors are kept for the
  main thread (`check`)."""

  def __init__(self, job: Job, stats: Stats):
    super().__init__(name="generate-write", daemon=True)
    self.job, self.stats = job, stats
    self.queue: queue.Queue = queue.Queue(QUEUE)
    self.error: BaseException | None = None
    self.shard = None
    self.commits = commits_at_once()
    self.pending: collections.deque = collections.deque()  # Commits in progress (futures).

  def run(self) -> None:
    committer = concurrent.futures.ThreadPoolExecutor(self.commits,
                                                      thread_name_prefix="generate-commit")
    try:
      while (item := self.queue.get()) is not None:
        self._write(*item, committer)
    except BaseException as e:  # pylint: disable=broad-except  # Re-raised in the main thread.
      self.error = e
    finally:
      if self.shard is not None:
        self.shard.abort()
      committer.shutdown(wait=True)  # Shards being committed are completed.
      failed = [e for e in (f.exception() for f in self.pending) if e is not None]
      if failed and self.error is None:
        self.error = failed[0]

  def put(self, item) -> None:
    while True:
      self.check()
      try:
        return self.queue.put(item, timeout=0.5)
      except queue.Full:
        continue

  def check(self) -> None:
    if self.error is not None:
      raise self.error
    if not self.is_alive():
      raise RuntimeError("the generate writer thread stopped")

  def finish(self) -> None:
    self.put(None)
    self.join()
    if self.error is not None:
      raise self.error

  def stop(self) -> None:
    """Drops what is queued, lets the current item finish, discards the open shard."""
    while True:
      try:
        self.queue.get_nowait()
      except queue.Empty:
        break
    self.queue.put(None)
    self.join()

  def _fetch(self, out: sampling.Generated) -> tuple[np.ndarray, list[np.ndarray] | None]:
    t = time.perf_counter()
    images = np.asarray(out.images)
    latents = None if out.z is None else [np.asarray(a) for a in (out.mean, out.logvar, out.z)]
    self.stats.add("wait for the devices (wall)", time.perf_counter() - t)
    return images, latents

  def _write(self, batch: Batch, out: sampling.Generated | None, committer) -> None:
    job, stats = self.job, self.stats
    if self.shard is None:
      self.shard = shards_lib.open_shard(
          job.root, shards_lib.name(batch.shard, job.num_shards, job.layout.format), job.layout)
    images, latents = self._fetch(out) if out is not None else (None, None)
    t, j, attrs = time.thread_time(), 0, job.sources.attributes
    for index, reason in batch.entries:
      source_id = job.sources.ids[index]
      if reason:
        self.shard.skip(source_id, reason)
        stats.skipped += 1
        continue
      self.shard.add(source_id, images[j], None if latents is None else [a[j] for a in latents],
                     None if attrs is None else attrs[index])
      j += 1
    stats.add("encode and write (thread CPU)", time.thread_time() - t)
    stats.records += j * job.num_variations
    stats.sources += j
    if batch.last:  # Committed in the background (fsync waits for the disk) while the next
      while len(self.pending) >= self.commits:  # shards are written, `commits` at most at once.
        self.pending.popleft().result()
      self.pending.append(committer.submit(self._commit, batch.shard, self.shard))
      self.shard = None
    stats.report()

  def _commit(self, index: int, writer: Any) -> None:
    t = time.perf_counter()
    shard = writer.commit()
    manifest_lib.update(self.job.root,
                        lambda m: manifest_lib.add_shard(m, index, shard._asdict()))
    self.stats.add("commit: fsync, sha256, manifest (wall)", time.perf_counter() - t)
    self.stats.committed(index)


def run(job: Job, vae: Any, options: sampling.Options, stats: Stats,
        devices: Sequence | None = None) -> None:
  """Generates and commits every shard of `job`. A KeyboardInterrupt discards the open shard
  (committed ones stay) and propagates."""
  devices = list(devices or jax.local_devices())
  writer = Writer(job, stats)
  writer.start()
  stream = batches(job, stats)
  try:
    for batch in stream:
      out = None
      if batch.count:
        ids = [job.sources.ids[i] for i, reason in batch.entries if not reason]
        keys = keys_lib.source_keys(job.seed, ids + [""] * (job.batch_size - len(ids)))
        out = sampling.keyed_variations(vae.model, vae.params, batch.images, keys,
                                        job.num_variations, options, devices,
                                        latents=job.layout.latent_dim > 0, as_uint8=True)
      writer.put((batch, out))
    writer.finish()
  except BaseException:
    if writer.is_alive():
      writer.stop()
    raise
  finally:
    stream.close()
