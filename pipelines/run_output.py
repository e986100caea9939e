"""What a person sees while a pipeline runs under kfp.local, and the full log kept aside.

kfp.local prints everything to stdout: each step's whole output and, when a
step ends, every artifact's metadata (hundreds of lines of confidence
metrics for a classification). `ReadableOutput` stands in for sys.stdout
during the run. It writes every byte to a log file, and shows the terminal
one line when each step starts and ends, each training epoch as a line of
progress, and the pipeline's final status. A failed step's output is shown
in full, since that is where its error is.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
PIPELINE_FINISHED = re.compile(r"Pipeline '([^']+)' finished with status (\w+)")
CACHE_HIT = re.compile(r"Task ([\w-]+) cache hit")
# The trainer's per-epoch line (rnn_classifier.train.format_metrics).
EPOCH = re.compile(r"\bepoch=(\d+)\b.*?\bval_macro_auc=([-\d.naN]+)")


class ReadableOutput:
    """A text stream: everything to `log_path`, a readable summary to `terminal`."""

    def __init__(self, log_path: Path, terminal: TextIO) -> None:
        self.log_path = log_path
        self.log = log_path.open("w", encoding="utf-8")
        self.terminal = terminal
        self.partial = ""
        self.task_lines: list[str] = []
        self.started: dict[str, float] = {}

    def write(self, text: str) -> int:
        self.log.write(text)
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def _show(self, line: str) -> None:
        self.terminal.write(line + "\n")
        self.terminal.flush()

    def _line(self, line: str) -> None:
        self.task_lines.append(line)
        if match := STARTED.search(line):
            self.task_lines = []
            self.started[match.group(1)] = time.monotonic()
            self._show(f"  {match.group(1)}: started")
        elif match := FINISHED.search(line):
            name, status = match.groups()
            seconds = time.monotonic() - self.started.get(name, time.monotonic())
            if status != "SUCCESS":
                # The failed step's own output holds its error: show all of it.
                for kept in self.task_lines[:-1]:
                    self._show(f"    | {kept}")
            self._show(f"  {name}: {status.lower()} ({seconds:.0f} s)")
        elif match := CACHE_HIT.search(line):
            self._show(f"  {match.group(1)}: reused from the cache")
        elif match := PIPELINE_FINISHED.search(line):
            self._show(f"pipeline {match.group(1)}: {match.group(2).lower()}")
        elif match := EPOCH.search(line):
            self._show(f"    epoch {match.group(1)}: val_macro_auc={match.group(2)}")

    def log_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """A `warnings.showwarning`: kfp.local's notices about settings it ignores go to the log."""
        import warnings

        self.log.write(warnings.formatwarning(message, category, filename, lineno, line))

    @contextlib.contextmanager
    def root_logging(self):
        """INFO records of the root logger written to this stream, for the run's duration."""
        root = logging.getLogger()
        handler = logging.StreamHandler(self)
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)

    def flush(self) -> None:
        self.log.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self.partial:
            self._line(ANSI.sub("", self.partial))
            self.partial = ""
        self.log.close()
