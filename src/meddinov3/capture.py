"""Library output sent to a log file at the file-descriptor level.

nnU-Net prints plans, configuration dictionaries, per-epoch logs and tqdm bars, some of it from
worker processes; redirecting descriptors (not only `sys.stdout`) catches child processes and C
extensions too. Used by the demo (everything into OUT/logs/<step>.log) and `meddinov3 plan`;
`stderr_captured` keeps a C library's complaint for the caller's own error message.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Iterator


@contextmanager
def output_to_log(log: Path, enabled: bool = True, stderr: bool = True) -> Iterator[None]:
    """Send descriptor 1, and 2 unless `stderr=False`, to `log` (appended) while inside."""
    if not enabled:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    descriptors = (1, 2) if stderr else (1,)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(descriptor) for descriptor in descriptors]
    with open(log, "a", buffering=1, encoding="utf-8", errors="replace") as handle:
        for descriptor in descriptors:
            os.dup2(handle.fileno(), descriptor)
        # sys.stdout may not write to descriptor 1 (pytest, notebooks): swap the objects too.
        try:
            with redirect_stdout(handle), redirect_stderr(handle) if stderr else nullcontext():
                yield
        finally:
            handle.flush()
            for descriptor, original in zip(descriptors, saved):
                os.dup2(original, descriptor)
                os.close(original)


@contextmanager
def stderr_captured() -> Iterator[list[str]]:
    """What C code writes to descriptor 2 while inside, kept back: the list yielded holds it
    (one string) after the block. For libraries that print a failure instead of reporting it
    (SimpleITK's NIfTI writer on a full disk: "** ERROR: NWAD: wrote only ..."), so that the
    caller can put it into its own one-line error."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))
