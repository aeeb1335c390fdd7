"""The request metrics of each process, in files that every process reads.

In prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) each
process writes its values to files of that directory and ``/metrics`` of any
process sums every file (``prometheus_client.multiprocess.MultiProcessCollector``).
prometheus_client's own metric objects take a lock and check the pid for each of
the five values a request changes (6.1 us per request, against 0.6 us in one
process). Here the request series of a process go to three files of its own,
in prometheus_client's file format (``mmap_dict.MmapedDict``: a used-length
header, then entries of a length-prefixed JSON key padded to 8 bytes, a double
value and a double timestamp), so the stock collector reads and merges them
exactly as it merges its own. One process writes each file; a request updates
its values in place through a ``memoryview`` of doubles over the mapping,
under one lock per process.

* ``counter_{pid}-requests.db``: ``requests_total`` by code. Kept when the
  process dies, so a dead worker's requests keep counting.
* ``histogram_{pid}-requests.db``: ``request_duration_seconds`` buckets (not
  cumulative, as prometheus_client writes them) and sum. Kept likewise.
* ``gauge_livesum_{pid}-requests.db``: ``inflight_requests``, summed over the
  live processes; :func:`mark_process_dead` removes it with the process's
  own live gauges.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["FileStore", "mark_process_dead"]

_INITIAL_SIZE = 1 << 16  # the size prometheus_client gives a new file
_LENGTH = struct.Struct("i")
_SUFFIX = "-requests.db"
_COUNTER, _HISTOGRAM, _GAUGE = "counter", "histogram", "gauge_livesum"


def _path(directory: str, kind: str, pid: int) -> str:
    return os.path.join(directory, f"{kind}_{pid}{_SUFFIX}")


class _ValueFile:
    """A file of prometheus_client's ``MmapedDict`` format, written by this process alone.

    :attr:`view` is the mapping as doubles: the value of a key is
    ``view[slot(key)]``. The file only grows; a view taken before it grew still
    reaches every slot given out before, so a series may keep its view.
    """

    def __init__(self, path: str) -> None:
        # a descriptor, not a file object: open as long as the process, to grow the file
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size == 0:
            size = _INITIAL_SIZE
            os.ftruncate(self._fd, size)
        self._map(size)
        self._slots: dict[str, int] = {}
        self._used = _LENGTH.unpack_from(self._mmap, 0)[0]
        if self._used == 0:
            self._used = 8
            self._mmap[0:4] = _LENGTH.pack(8)
        else:  # a file of a process that had this pid before: go on counting from its values
            position = 8
            while position < self._used:
                (length,) = _LENGTH.unpack_from(self._mmap, position)
                key = bytes(self._mmap[position + 4 : position + 4 + length]).decode()
                position += 4 + length + (8 - (length + 4) % 8)
                self._slots[key] = position // 8
                position += 16

    def _map(self, size: int) -> None:
        self._size = size
        self._mmap = mmap.mmap(self._fd, size)
        self.view = memoryview(self._mmap).cast("d")

    def slot(self, key: str) -> int:
        """The index in :attr:`view` of *key*'s value, added (at 0) if new. Lock held."""
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        encoded = key.encode()
        # the padding prometheus_client's reader expects: 1 to 8 bytes, never 0
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        entry = struct.pack(f"i{len(padded)}sdd", len(encoded), padded, 0.0, 0.0)
        end = self._used + len(entry)
        if end > self._size:
            size = self._size
            while end > size:
                size *= 2
            os.ftruncate(self._fd, size)
            # the old mapping stays valid for views taken from it (the file only grows)
            self._map(size)
        self._mmap[self._used : end] = entry
        self._used = end
        self._mmap[0:4] = _LENGTH.pack(end)  # the entry is complete before a reader sees it
        slot = self._slots[key] = (end - 16) // 8
        return int(slot)


class _ProcessFiles:
    """The three files of one process in one directory, and the lock of every write to them."""

    def __init__(self, directory: str, pid: int) -> None:
        self.lock = threading.Lock()
        self.counter = _ValueFile(_path(directory, _COUNTER, pid))
        self.histogram = _ValueFile(_path(directory, _HISTOGRAM, pid))
        self.gauge = _ValueFile(_path(directory, _GAUGE, pid))
        self.paths = tuple(_path(directory, kind, pid) for kind in (_COUNTER, _HISTOGRAM, _GAUGE))


_files: dict[tuple[str, int], _ProcessFiles] = {}
_files_lock = threading.Lock()


def _process_files(directory: str) -> _ProcessFiles:
    pid = os.getpid()
    with _files_lock:
        files = _files.get((directory, pid))
        if files is None:
            files = _files[directory, pid] = _ProcessFiles(directory, pid)
        return files


def _key(metric: str, name: str, labels: dict[str, str], documentation: str) -> str:
    # the key prometheus_client writes (mmap_dict.mmap_key), so the two merge as one
    return json.dumps([metric, name, labels, documentation], sort_keys=True)


class FileSeries:
    """The request counts of one model version, in this process's files.

    Every value a request changes is written under the process's lock, as a
    double in place; a scrape in another process reads the file. After a
    ``fork()`` the child writes files of its own (:func:`_after_fork`).
    """

    __slots__ = (
        "__weakref__", "_bounds", "_bucket_keys", "_code_keys", "_codes", "_counter",
        "_directory", "_gauge", "_histogram", "_inflight", "_inflight_key", "_lock", "_slots",
        "_sum", "_sum_key",
    )  # fmt: skip

    def __init__(
        self, store: FileStore, model: str, version: str, bounds: tuple[float, ...]
    ) -> None:
        self._bounds = bounds
        self._directory = store.directory
        labels = {"model": model, "version": version}
        requests, duration, inflight = store.names
        self._code_keys = (requests, f"{requests}_total", labels, store.documentation[0])
        self._bucket_keys = [
            _key(duration, f"{duration}_bucket", {**labels, "le": le}, store.documentation[1])
            for le in store.les
        ]
        self._sum_key = _key(duration, f"{duration}_sum", labels, store.documentation[1])
        self._inflight_key = _key(inflight, inflight, labels, store.documentation[2])
        self._codes: dict[str, int] = {}
        self._bind(_process_files(self._directory))

    def _bind(self, files: _ProcessFiles) -> None:
        """Give every value a slot in *files* (added at 0 where new), and take their views."""
        with files.lock:
            self._lock = files.lock
            histogram = files.histogram
            self._slots = [histogram.slot(key) for key in self._bucket_keys]
            self._sum = histogram.slot(self._sum_key)
            self._histogram = histogram.view  # taken last: it reaches every slot above
            self._inflight = files.gauge.slot(self._inflight_key)
            self._gauge = files.gauge.view
            self._codes = {code: files.counter.slot(self._code_key(code)) for code in self._codes}
            self._counter = files.counter.view

    def _code_key(self, code: str) -> str:
        metric, name, labels, documentation = self._code_keys
        return _key(metric, name, {**labels, "code": code}, documentation)

    def _add_code(self, code: str) -> int:
        files = _process_files(self._directory)
        with files.lock:
            slot = self._codes[code] = files.counter.slot(self._code_key(code))
            self._counter = files.counter.view
        return slot

    def start(self) -> None:
        with self._lock:
            self._gauge[self._inflight] += 1.0

    def end(self, code: str, latency_s: float, /) -> None:
        bounds = self._bounds
        index = bisect_left(bounds, latency_s)  # le is inclusive, as bisect_left
        # a NaN goes in no bucket (still in the sum), as prometheus_client
        counted = index != 0 or latency_s <= bounds[0]
        slot = self._codes.get(code)
        if slot is None:
            slot = self._add_code(code)
        with self._lock:
            self._counter[slot] += 1.0
            histogram = self._histogram
            if counted:
                histogram[self._slots[index]] += 1.0
            histogram[self._sum] += latency_s
            self._gauge[self._inflight] -= 1.0


class FileStore(Collector):
    """The request metrics of multiprocess mode: :class:`FileSeries` in this process's files.

    ``/metrics`` reads them through prometheus_client's ``MultiProcessCollector``,
    with every process's files. Registered on the monitor's registry, this
    collector names the metrics (so a duplicate name is refused) and exposes
    this process's own values, as prometheus_client's objects do in this mode.
    """

    documentation = (
        "Requests answered, by outcome code (ok or the error code).",
        "Time from request start to end.",
        "Requests started and not yet finished.",
    )

    def __init__(
        self, namespace: str, buckets: tuple[float, ...], directory: str | None = None
    ) -> None:
        if directory is None:
            directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if not directory:
            raise ValueError("multiprocess mode needs PROMETHEUS_MULTIPROC_DIR")
        self.directory = directory
        self.names = (
            f"{namespace}_requests",
            f"{namespace}_request_duration_seconds",
            f"{namespace}_inflight_requests",
        )
        go_string: Callable[[float], str] = floatToGoString
        self.les = [go_string(b) for b in buckets] + ["+Inf"]
        self._bounds = buckets
        self._series: dict[tuple[str, str], FileSeries] = {}
        self._lock = threading.Lock()
        _stores.add(self)

    def series(self, model: str, version: str) -> FileSeries:
        with self._lock:
            series = self._series.get((model, version))
            if series is None:
                series = self._series[model, version] = FileSeries(
                    self, model, version, self._bounds
                )
            return series

    def describe(self) -> Iterable[Metric]:
        kinds = ("counter", "histogram", "gauge")
        described = zip(self.names, self.documentation, kinds, strict=True)
        return [Metric(name, documentation, kind) for name, documentation, kind in described]

    def collect(self) -> Iterable[Metric]:
        paths = _process_files(self.directory).paths
        merged = multiprocess.MultiProcessCollector.merge(paths, accumulate=True)  # type: ignore[no-untyped-call]
        families = [family for family in merged if family.name in self.names]
        for family in families:
            if family.name == self.names[1]:
                family.unit = "seconds"  # the files keep no unit
        return families

    def _rebind(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork
        for series in self._series.values():
            series._bind(_process_files(series._directory))


_stores: weakref.WeakSet[FileStore] = weakref.WeakSet()


def _after_fork() -> None:
    # a child writes files of its own pid, starting at 0, as prometheus_client's values do
    global _files_lock
    _files_lock = threading.Lock()
    _files.clear()
    for store in list(_stores):
        store._rebind()


os.register_at_fork(after_in_child=_after_fork)


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Drop the live gauges of a process that ended, ours and prometheus_client's.

    Call it where you would call ``prometheus_client.multiprocess.mark_process_dead``
    (gunicorn's ``child_exit``): the process's ``inflight_requests`` leave the
    sum, its request counters and histograms keep counting.

    Args:
        pid: The process that ended.
        path: The multiprocess directory; ``PROMETHEUS_MULTIPROC_DIR`` when ``None``.

    .. versionadded:: 0.1.0
    """
    if path is None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    with contextlib.suppress(FileNotFoundError):
        os.remove(_path(path, _GAUGE, pid))
