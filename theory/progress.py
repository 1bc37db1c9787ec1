"""Progress of long runs: a bar on a terminal, plain lines everywhere else.

A run logged to a file (or a CI job, or a notebook whose stderr is not a
terminal) gets one line on stderr every `TMS_DROPOUT_PROGRESS_SECONDS`
seconds (default 10), and one when it ends:

    sweep: 384/1920 inst-step (20%), 2.1e+04 inst-step/s, 18 s elapsed, 73 s left

Every layer reports through this one class, so the format and the switch
(`show`) are the same everywhere.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext


def _seconds(value: float) -> str:
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def line_interval() -> float:
    """Seconds between plain progress lines ($TMS_DROPOUT_PROGRESS_SECONDS, default 10)."""
    try:
        return max(0.0, float(os.environ.get("TMS_DROPOUT_PROGRESS_SECONDS", "10")))
    except ValueError:
        return 10.0


class Progress:
    """Count work done out of `total`; use as a context manager.

    show: None (the default) draws a tqdm bar when stderr is a terminal and
    writes plain lines otherwise; False is silent; True is the same as None
    (kept so that callers can pass a user's switch straight through).

    >>> with Progress(3, "cells", show=False) as bar:
    ...     bar.update(3)
    >>> bar.done
    3
    """

    def __init__(self, total: int, desc: str, unit: str = "it", show: bool | None = None, stream=None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = show is not False
        self.bar = None
        self.interval = line_interval()
        self.start = self.last = time.perf_counter()
        self.lines, self.last_done = 0, None
        if self.enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit=unit, unit_scale=True, file=self.stream)

    @classmethod
    def of(cls, progress, total: int, desc: str, unit: str = "it") -> AbstractContextManager[Progress]:
        """`progress` itself when it is a Progress (a caller counting a larger job), else a new one.

        So a function takes `progress: bool | None | Progress` and reports
        into whatever its caller is counting.
        """
        if isinstance(progress, Progress):
            return nullcontext(progress)
        return cls(total, desc, unit, show=progress)

    @staticmethod
    def switch(progress) -> bool | None:
        """The `show` for a bar of a function's own (not its caller's): a caller's Progress's `enabled`,
        else `progress` itself (None, True or False)."""
        return progress.enabled if isinstance(progress, Progress) else progress

    def update(self, k: int = 1) -> None:
        self.done += int(k)
        if self.bar is not None:
            self.bar.update(int(k))
        elif self.enabled and time.perf_counter() - self.last >= self.interval:
            self._line()

    @property
    def drawn(self) -> bool:
        """True when a terminal bar is shown (worth computing figures for set_postfix)."""
        return self.bar is not None

    def set_postfix(self, **values) -> None:
        """Extra figures on the bar (terminal only)."""
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def _line(self) -> None:
        now = time.perf_counter()
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        fraction = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = (
            f", {_seconds((self.total - self.done) / rate)} left"
            if rate > 0 and self.done < self.total
            else ""
        )
        print(
            f"{self.desc}: {self.done}/{self.total} {self.unit}{fraction}, {rate:.3g} {self.unit}/s, "
            f"{_seconds(elapsed)} elapsed{left}",
            file=self.stream,
            flush=True,
        )
        self.last, self.last_done = now, self.done
        self.lines += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.last_done != self.done:
            if self.lines or time.perf_counter() - self.start >= self.interval:
                self._line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
