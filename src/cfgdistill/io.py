"""Output files and folders: refused before any work if they cannot be written, and replaced atomically.

Every writer goes through `atomic`: the new content is written beside its destination under a hidden
temporary name, flushed, and renamed onto it, so a crash or a full disk never leaves half a file.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

from .errors import UserError

LOCK_FILE = ".cfgdistill.lock"  # held by the run that writes a run folder (training/run_folder.py)
WRITE_ERRORS = (OSError, SafetensorError)  # safetensors reports a full disk as its own error type


def printable(message, lines: bool = False) -> str:
    """A message with undecodable bytes and control characters (from paths or prompts) escaped, so it stays
    one line; `lines` keeps its line breaks (a report)."""
    text = str(message).encode("utf-8", "backslashreplace").decode("utf-8")
    keep = "\n" if lines else ""
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode() for c in text)


def why(error: Exception) -> str:
    """A write error's reason in a few words ("No space left on device")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split("I/O error: ")[-1].split(" (os error")[0]


def _fsync(path: Path):
    for item in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic(path):
    """Yield a temporary path beside `path`; once the block succeeds it replaces `path` (a file or a folder)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _fsync(tmp)
        if tmp.is_dir() and path.exists():  # a folder cannot be renamed onto a non-empty one
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


@contextmanager
def staged(folder, last: tuple = ()):
    """Yield a hidden staging folder inside `folder`; once the block succeeds every file in it is renamed
    into `folder` (the names in `last` last), so a multi-file output appears whole or not at all."""
    folder = Path(folder)
    stage = folder / f".staging-{os.getpid()}"
    _remove(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        _fsync(stage)
        for item in sorted(stage.iterdir(), key=lambda p: (p.name in last, p.name)):
            if item.is_dir() and (folder / item.name).exists():
                _remove(folder / item.name)
            os.replace(item, folder / item.name)
    finally:
        _remove(stage)


def write_all(writers: dict):
    """{path: write(tmp_path)}: every file is written under a temporary name first, then all are renamed
    into place, so outputs that belong together (an image and its array) appear together or not at all."""
    done = []
    try:
        for path, write in writers.items():
            path = Path(path)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
            done.append((tmp, path))
            write(tmp)
            _fsync(tmp)
        for tmp, path in done:
            os.replace(tmp, path)
    finally:
        for tmp, _ in done:
            _remove(tmp)


def write_text(path, text: str) -> Path:
    with atomic(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_output_dir(path, overwrite: bool = False):
    """Refuse, before any work is done, an output folder that holds something or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output {path} exists and is not a folder")
    if path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir()) and not overwrite:
        raise UserError(f"output folder {path} is not empty; pass --overwrite to replace it")
    probe_writable(path if path.is_dir() else nearest_existing(path.resolve().parent), path)


def check_file_output(path, suffix: str):
    """An output file: its extension, an existing folder to hold it, and not a folder itself."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise UserError(f"{path} should end in {suffix}")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder")
    probe_writable(path.parent, path)


def nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def probe_writable(folder: Path, output: Path):
    """Create and remove a file where the output will go: the only test that holds for root and read-only mounts."""
    if not folder.is_dir():
        raise UserError(f"output folder {output} cannot be written: {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cfgdistill-probe-"):
            pass
    except OSError as error:
        raise UserError(f"output folder {output} cannot be written: {error.strerror}") from None


def cache_dir() -> Path:
    """Where cfgdistill keeps what it can rebuild: classifiers, precision timings ($CFGDISTILL_CACHE)."""
    return Path(os.environ.get("CFGDISTILL_CACHE", Path.home() / ".cache" / "cfgdistill"))


def resolved(path) -> Path:
    return Path(path).expanduser().resolve()


def check_apart(outputs: dict, inputs: dict):
    """Refuse, before any work, an output equal to, inside or containing an input, `--overwrite` or not: what a
    user brings (a teacher, a pipeline, data, prompts) is never written to. Both are {flag: path}; inputs that
    are not on disk (a bundled dataset's name, a hub id) hold nothing to protect."""
    for flag, path in outputs.items():
        out = resolved(path)
        for source, given in inputs.items():
            if not Path(given).expanduser().exists():
                continue
            read = resolved(given)
            if out == read or read in out.parents or out in read.parents:
                how = "is" if out == read else "lies inside" if read in out.parents else "holds"
                raise UserError(
                    f"--{flag} {path} {how} {source} {given}: cfgdistill never writes to what it reads; "
                    f"choose another --{flag}"
                )
