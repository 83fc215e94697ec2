"""A training run's folder: one run at a time (an exclusive lock), its rules, and no debris from a failed start.

The lock is an `fcntl.flock` on `.cfgdistill.lock` in the folder, holding the owner's PID. The kernel
drops it when the owner dies, so a stale lock never blocks; the file is removed when the run ends.
"""

import fcntl
import os
import shutil
from pathlib import Path

from ..errors import UserError
from ..io import LOCK_FILE, WRITE_ERRORS, check_output_dir, nearest_existing, probe_writable, why
from .accelerator import is_main_process
from .state import checkpoint_root, kept_note, scan


def acquire(path: Path) -> int:
    """An exclusive lock on `path`, or a UserError naming the process that holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{path.parent} is in use by another cfgdistill run (PID {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino  # not a file its last holder just removed
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def prepare_run_folder(run):
    """A run folder is fresh, resumed (`resume`) or replaced (`overwrite`); anything else is refused untouched.
    An overwritten run's old checkpoints and logs are cleared by the loop, once the new run has passed its checks.
    The folders the run will write into must be folders (or absent), so no save fails halfway through a run."""
    for place in (checkpoint_root(run.out), Path(run.out) / "logs"):
        if (place.exists() or place.is_symlink()) and not place.is_dir():
            raise UserError(
                f"{place} is not a folder; a run keeps its {place.name} there: move it or choose another --out"
            )
    if run.resume is not None:
        check_output_dir(run.out, overwrite=True)
        if run.resume != "latest" and not Path(run.resume).is_dir():
            raise UserError(
                f"--resume {run.resume}: no such checkpoint folder (use 'latest' or a checkpoints/step-N folder)"
            )
        return
    if checkpoint_root(run.out).is_dir() and not run.overwrite:
        raise UserError(
            f"{run.out} holds a training run; pass --resume latest to continue it or --overwrite to start over"
        )
    check_output_dir(run.out, run.overwrite)


class RunFolder:
    """`with RunFolder(run):` holds `run.out` for one run (main process only; no-op without a folder).

    If the run fails before it wrote a checkpoint, what it started (its logs, the folder it created)
    is removed, so a plain rerun is not refused; a run with checkpoints keeps them for --resume.
    """

    def __init__(self, run):
        self.run, self.fd, self.created = run, None, []

    def __enter__(self):
        if self.run.out is None or not is_main_process():
            return self
        out = Path(self.run.out)
        probe_writable(nearest_existing(out.resolve().parent), out)
        self.created = [p for p in (out, *out.parents) if not p.exists()]
        out.mkdir(parents=True, exist_ok=True)
        self.fd = acquire(out / LOCK_FILE)
        try:
            prepare_run_folder(self.run)
        except BaseException:
            self.release(out)
            self.remove_created()
            raise
        # logs that a failed fresh run may leave are its own: new, or the old ones that --overwrite clears
        self.own_logs = self.run.resume is None and (self.run.overwrite or not (out / "logs").exists())
        return self

    def __exit__(self, kind, error, traceback):
        if self.fd is None:
            return
        out = Path(self.run.out)
        self.release(out)
        if kind is not None and not scan(out)[0]:  # nothing to resume from: leave nothing that blocks a rerun
            if self.own_logs:
                shutil.rmtree(out / "logs", ignore_errors=True)
            if checkpoint_root(out).is_dir() and not any(checkpoint_root(out).iterdir()):
                checkpoint_root(out).rmdir()
            self.remove_created()

    def release(self, out: Path):
        os.unlink(out / LOCK_FILE)
        os.close(self.fd)
        self.fd = None

    def save(self, checkpoint):
        """Write the finished model into the run folder (main process only); a failed write keeps the checkpoints."""
        if self.run.out is None or not is_main_process():
            return
        try:
            checkpoint.save(self.run.out, overwrite=True)
        except WRITE_ERRORS as error:
            raise UserError(
                f"cannot write the model to {self.run.out}: {why(error)}; {kept_note(self.run.out)}; "
                "free space and rerun (--resume latest continues from a checkpoint)"
            ) from None

    def remove_created(self):
        for folder in self.created:  # innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
