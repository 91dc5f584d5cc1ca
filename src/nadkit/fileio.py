"""Writing files so that nothing half-written is ever left behind: write beside, then rename.

The temporary file or folder is named ``.NAME.PID.RANDOM.part`` (hidden, beside its target, with the
writer's process id). A writer killed outright (``kill -9``, a power cut) cannot remove its own: the
next write to the same target removes the ones whose process is gone.

A directory is replaced in two renames (the old one to ``.NAME.old``, the new one onto ``NAME``); a
writer killed between them leaves nothing at ``NAME``. :func:`recover_directory`, called by the next
write and by loaders, puts the old one back (the write never finished, so nobody was told of the new
one) and removes a ``.NAME.old`` that a finished write left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from nadkit.errors import NadkitError

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: Path, *, directory: bool) -> None:
    """Give a temporary file or folder the permissions a plain ``open``/``mkdir`` would have
    (``mkstemp``/``mkdtemp`` make them private to the owner)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def process_alive(pid: int) -> bool:
    """Whether the process ``pid`` still runs (what a leftover's writer is checked with)."""
    return _alive(pid)


def sweep_leftovers(path: Path) -> list[Path]:
    """Remove the temporary files and folders of earlier writers of ``path`` that were killed before
    they finished (their process is gone); returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.glob(f".{glob_escape(path.name)}.*.part"):
            pid = entry.name[len(path.name) + 2 :].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def cut_partial_line(path: str | Path, *, block: int = 1 << 16) -> int:
    """Remove a last line that does not end in a newline from the line file ``path`` (what a writer
    killed in the middle of a line leaves), so that lines appended next start on a line of their own;
    returns how many bytes were removed (0 when the file ends whole or does not exist)."""
    path = Path(path)
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        end = size
        while end > 0:  # back to the newline before the cut line, a block at a time
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        handle.truncate(end)
        handle.flush()
        os.fsync(handle.fileno())
    return size - end


def glob_escape(name: str) -> str:
    """``name`` with the glob wildcards ``*``, ``?`` and ``[`` taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On error the temporary file is removed and ``path`` is untouched. Without ``overwrite`` an
    existing ``path`` is an error, so nothing a user saved is silently replaced.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise NadkitError(f"{path}: already exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(path)
    handle, name = tempfile.mkstemp(prefix=_prefix(path), suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    _default_mode(temporary, directory=False)
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
        _sync(path.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` as a whole (written and synced beside it, then renamed), so a
    crash leaves the old content or the new, never a mix."""
    with atomic_path(path, overwrite=True) as temporary:
        temporary.write_bytes(data)


def _sync(path: Path) -> None:
    """Flush ``path`` (a file, or a directory's entries) to the disk, where the system allows."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(handle)


def backup_path(path: Path) -> Path:
    """Where :func:`atomic_directory` keeps the old ``path`` between its two renames."""
    return path.with_name(f".{path.name}.old")


def _writer_alive(path: Path) -> bool:
    """Whether another live process is writing ``path`` (has a temporary beside it)."""
    with contextlib.suppress(OSError):
        for entry in path.parent.glob(f".{glob_escape(path.name)}.*.part"):
            pid = entry.name[len(path.name) + 2 :].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                return True
    return False


def recover_directory(path: str | Path, complete: Callable[[Path], bool] | None = None) -> bool:
    """Repair what a writer of the directory ``path`` killed during an overwrite left behind, unless a
    live writer is at work: with nothing at ``path``, or a directory that ``complete`` says is not
    whole, the old directory (``.NAME.old``) is put back; beside a whole ``path`` a stale ``.NAME.old``
    is removed. True when the old directory was put back. Failures (a read-only place) are logged
    and left for the caller to meet."""
    path = Path(path)
    backup = backup_path(path)
    if not backup.is_dir() or backup.is_symlink() or _writer_alive(path):
        return False
    present = path.exists() or path.is_symlink()
    whole = present and path.is_dir() and not path.is_symlink() and (complete is None or complete(path))
    try:
        if whole:
            shutil.rmtree(backup)
            log.info("%s: removed %s, left by a writer that finished its overwrite", path, backup.name)
            return False
        if present:
            aside = path.with_name(f"{_prefix(path)}incomplete.part")
            os.replace(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(backup, path)
        _sync(path.parent)
    except OSError as error:
        log.warning("%s: cannot restore %s (%s)", path, backup.name, error.strerror or error)
        return False
    log.warning("%s: a writer was killed while replacing it; the previous version is restored", path)
    return True


def refuse_file(path: str | Path) -> None:
    """Stop where a directory is to be written at ``path`` but a file is there: it is never replaced,
    even with ``--force`` (a second input file taken for the output would otherwise be lost)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NadkitError(
            f"{path}: is a file, and a directory is never written over a file, even with --force "
            "(to read several files, give their directory or a glob)"
        )


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` as a whole (an
    overwrite that a killed writer left half done is repaired first: :func:`recover_directory`).
    A file at ``path`` is never replaced (:func:`refuse_file`)."""
    path = Path(path)
    recover_directory(path)
    refuse_file(path)
    if path.exists() and not overwrite:
        raise NadkitError(f"{path}: already exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(path)
    temporary = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".part", dir=path.parent))
    _default_mode(temporary, directory=True)
    try:
        yield temporary
        if path.exists():
            backup = backup_path(path)
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(path, backup)
            os.replace(temporary, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
