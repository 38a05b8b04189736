"""Where a torrent's bytes live on disk: the files of its byte stream, opened without
following planted symlinks, and the (file, offset, length) spans a range of it covers.

A single-file torrent is one file at the output path. A multi-file torrent (BEP 3
``files``) is a folder at the output path; its files are opened through directory
descriptors, one component at a time with O_NOFOLLOW, so a symlink planted anywhere in
the tree is refused, never followed. BEP 47 pad files are never created: they read as
zeros and writes to them are dropped.
"""
from __future__ import annotations

import bisect
import errno
import os
import resource
import stat
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ErrorCode, ZorrentError
from protocol.metainfo import FileEntry, Metainfo

NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
SPARE_FDS = 256        # descriptors kept free for sockets, state files and other torrents


class StorageError(ZorrentError):
    code = ErrorCode.BAD_INPUT


class FileChanged(StorageError):
    """A file is no longer the one whose pieces were verified; nothing read from it is served."""

    code = ErrorCode.PIECE_UNAVAILABLE


def why(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass(frozen=True)
class Stamp:
    """What says an open file is still the one whose pieces were verified: its inode, its
    size, and when its contents (mtime) or inode (ctime: a write that restores mtime) changed."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Stamp":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_change(fd: int, path: Path, stamp: Stamp, sealed: bool, follow: bool, need: int) -> str:
    """Why the open file ``fd`` is no longer the one at ``path`` that was verified ("" if it
    still is): the path is gone, not a regular file, or another inode; or the file moved."""
    try:
        now = os.fstat(fd)
        here = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return f"{path} is missing"
    except OSError as exc:
        return f"cannot stat {path}: {why(exc)}"
    if not stat.S_ISREG(here.st_mode):
        return f"{path} is {kind(here.st_mode)} now, not a file"
    if (here.st_dev, here.st_ino) != (now.st_dev, now.st_ino):
        return f"{path} was replaced by another file"
    return moved(path, now, stamp, sealed, need)


def moved(path: Path, now: os.stat_result, stamp: Stamp, sealed: bool, need: int) -> str:
    """The open file's own change: sealed (complete, no longer written), its size or times
    moved; else it shrank below ``need`` bytes (the end of its verified pieces)."""
    if sealed:
        if now.st_size != stamp.size:
            return f"{path} changed size ({stamp.size} -> {now.st_size} bytes)"
        if now.st_mtime_ns != stamp.mtime_ns or now.st_ctime_ns != stamp.ctime_ns:
            return f"{path} was modified"
    elif now.st_size < need:
        return f"{path} shrank to {now.st_size} bytes"
    return ""


def kind(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode)
            else "a regular file" if stat.S_ISREG(mode) else "a special file")


class Layout:
    """The files of one torrent under ``root`` (the file itself for a single-file torrent)."""

    def __init__(self, meta: Metainfo, root: Path) -> None:
        self.meta, self.root = meta, root
        self.entries: tuple[FileEntry, ...] = meta.files
        self.starts = [e.offset for e in self.entries]

    def path_of(self, index: int) -> Path:
        entry = self.entries[index]
        return self.root.joinpath(*entry.path) if self.meta.multi_file else self.root

    def spans(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(file index, offset in that file, bytes) covering ``length`` bytes from ``offset``."""
        i = bisect.bisect_right(self.starts, offset) - 1
        out = []
        while length > 0:
            entry = self.entries[i]
            n = min(length, entry.offset + entry.length - offset)
            if n > 0:
                out.append((i, offset - entry.offset, n))
                offset, length = offset + n, length - n
            i += 1
        return out

    # ------------------------------------------------------------------ opening
    def open_seed(self) -> list[int]:
        """One read-only descriptor per file (-1 for pad files), each the size the torrent says."""
        if not self.meta.multi_file:
            return [_open_seed_file(self.root, self.meta.length)]
        if not self.root.is_dir():
            raise StorageError(f"{self.root} is not a folder; the torrent {self.meta.name} is a folder")
        _room_for(len(self.entries))
        fds: list[int] = []
        try:
            for i, entry in enumerate(self.entries):
                fd = -1 if entry.pad else _open_seed_file(self.path_of(i), entry.length)
                if fd >= 0 and entry.length == 0:      # nothing to read: no descriptor to keep
                    os.close(fd)
                    fd = -1
                fds.append(fd)
        except BaseException:
            _close_all(fds)
            raise
        return fds

    def open_download(self, resuming: bool) -> tuple[list[int], bool]:
        """Create (or reopen) every file, and the folders they are in; (descriptors, fresh).

        An existing file is taken only if it is our own partial download (``resuming``) or
        already has its length (then it is rechecked, not trusted). ``fresh``: every file
        was empty, so there is nothing on disk to recheck.
        """
        if not self.meta.multi_file:
            try:
                self.root.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot write {self.root}: {why(exc)}") from None
            fd, size = _open_write(None, self.root, self.root, self.meta.length, resuming)
            return [fd], size == 0
        _room_for(len(self.entries))
        root_fd = _open_root(self.root)
        dirs: dict[tuple[str, ...], int] = {(): root_fd}
        fds: list[int] = []
        fresh = True
        try:
            for i, entry in enumerate(self.entries):
                if entry.pad:
                    fds.append(-1)
                    continue
                dir_fd = _folder(dirs, entry.path[:-1], self.root, create=True)
                fd, size = _open_write(dir_fd, entry.path[-1], self.path_of(i), entry.length, resuming)
                fresh = fresh and size == 0
                if entry.length == 0:                  # created; nothing will be written to it
                    os.close(fd)
                    fd = -1
                fds.append(fd)
        except BaseException:
            _close_all(fds)
            raise
        finally:
            _close_all(dirs.values())
        return fds, fresh

    def sizes_complete(self, fds: list[int]) -> bool:
        """Every file already has its full length (a stream recheck can read it all)."""
        return all(fd < 0 or os.fstat(fd).st_size >= e.length for fd, e in zip(fds, self.entries))

    def stamp(self) -> tuple[int, int, int]:
        """(total size, newest mtime, inode) of the files, (-1, 0, 0) if one is missing: a
        change means a full recheck. A folder's "inode" is a digest of its files' inodes."""
        try:
            if not self.meta.multi_file:
                st = os.stat(self.root)
                return st.st_size, st.st_mtime_ns, st.st_ino
            size = mtime = 0
            inodes = []
            for i, entry in enumerate(self.entries):
                if not entry.pad:
                    st = os.stat(self.path_of(i))
                    size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
                    inodes.append(st.st_ino)
        except OSError:
            return -1, 0, 0
        return size, mtime, hash(tuple(inodes)) & (2 ** 63 - 1)

    def reopen(self, follow: bool) -> list[int]:
        """Read-only descriptors of whatever is at the files' paths now, any size, to re-hash
        them after a change (-1 for pad and empty files). A file that is missing or not a
        regular file refuses the whole torrent, as qBittorrent's "missing files" does."""
        paths = [None if e.pad or e.length == 0 else self.path_of(i) for i, e in enumerate(self.entries)]
        fds: list[int] = []
        try:
            for path in paths:
                fds.append(-1 if path is None else _open_any(path, follow))
        except BaseException:
            _close_all(fds)
            raise
        return fds

    def delete(self) -> None:
        """Delete the downloaded files, then the folders they leave empty; follow no symlink."""
        if not self.meta.multi_file:
            self.root.unlink(missing_ok=True)
            return
        try:
            root_fd = os.open(self.root, NOFOLLOW_DIR)
        except OSError:
            return
        dirs: dict[tuple[str, ...], int] = {(): root_fd}
        try:
            for entry in self.entries:
                if entry.pad:
                    continue
                try:
                    os.unlink(entry.path[-1], dir_fd=_folder(dirs, entry.path[:-1], self.root, create=False))
                except (OSError, StorageError):
                    pass
            for folder in sorted(dirs, key=len, reverse=True):
                if folder:
                    try:
                        os.rmdir(folder[-1], dir_fd=dirs[folder[:-1]])
                    except OSError:
                        pass         # not empty: it holds files that are not the torrent's
        finally:
            _close_all(dirs.values())
        try:
            os.rmdir(self.root)
        except OSError:
            pass


def _room_for(files: int) -> None:
    """Raise the soft descriptor limit (up to the hard one) so a torrent of many files fits:
    each file stays open while the torrent is held."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = files + SPARE_FDS + len(os.listdir("/proc/self/fd"))
    if want > soft and (hard == resource.RLIM_INFINITY or soft < hard):
        new = want if hard == resource.RLIM_INFINITY else min(hard, max(want, 2 * soft))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass


def _close_all(fds) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def _open_any(path: Path, follow: bool) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)  # a FIFO must not hang
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise StorageError(f"{path} is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"{path} is a symlink now; not following it") from None
        raise StorageError(f"cannot read {path}: {why(exc)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise StorageError(f"{path} is {kind(mode)} now, not a file")
    return fd


def _open_seed_file(path: Path, length: int) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {why(exc)}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != length:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"{st.st_size} bytes"
        raise StorageError(f"{path} is {what}; the torrent says {length} bytes")
    return fd


def _open_root(root: Path) -> int:
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(root, 0o755)
        except FileExistsError:
            pass
        return os.open(root, NOFOLLOW_DIR)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StorageError(f"refusing to write into {root}: it is not a folder (a symlink or a file)") from None
        raise StorageError(f"cannot write {root}: {why(exc)}") from None


def _folder(dirs: dict[tuple[str, ...], int], parts: tuple[str, ...], root: Path, create: bool) -> int:
    """The descriptor of folder ``parts`` under the root, opened a component at a time."""
    if parts in dirs:
        return dirs[parts]
    parent = _folder(dirs, parts[:-1], root, create)
    try:
        if create:
            try:
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
            except FileExistsError:
                pass
        fd = os.open(parts[-1], NOFOLLOW_DIR, dir_fd=parent)
    except OSError as exc:
        where = root.joinpath(*parts)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StorageError(f"refusing to write into {where}: it is not a folder (a symlink or a file)") from None
        raise StorageError(f"cannot write {where}: {why(exc)}") from None
    dirs[parts] = fd
    return fd


def _open_write(dir_fd: int | None, name, shown: Path, length: int, resuming: bool) -> tuple[int, int]:
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"refusing to write through the symlink {shown}") from None
        raise StorageError(f"cannot write {shown}: {why(exc)}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StorageError(f"{shown} is not a regular file")
    fits = st.st_size <= length if resuming else st.st_size in (0, length)
    if not fits:
        os.close(fd)
        raise StorageError(f"{shown} already exists with {st.st_size} bytes; the torrent says "
                           f"{length} bytes (move it or choose another --output)")
    return fd, st.st_size
