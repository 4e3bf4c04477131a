"""Where a zoo or a stage's outputs live: a local directory (``pathlib.Path``) or a prefix in an object store
(``ObjectPath``, for ``s3://bucket/prefix`` and ``gs://bucket/prefix``).

``ObjectPath`` offers the part of pathlib's interface that storage uses (``/``, ``name``, ``exists``, ``glob``,
``read_text``, ``replace``, ...) on pyarrow's file systems, so the store, the manifest, resume, quarantine and every
stage's outputs are one code path for both. Reading goes through pyarrow for both (``arrow_path``).

What object stores guarantee, and what symzoo relies on:
- A new object appears whole or not at all: a PUT (and the completion of a multipart upload) is atomic, and since
  2020 S3, like GCS, gives strong read-after-write consistency for objects and listings.
- There is no rename. A commit writes a hidden temporary object, then the final name as a server-side copy of it,
  then deletes the temporary: the final name is never seen half-written, and a kill between the steps leaves only
  a hidden ``.NAME.tmp-*`` object, which the next run deletes as it does on a local disk. (S3 copies objects of up
  to 5 GB in one request; a shard is tens of MB.)
- Directories do not exist; a prefix "exists" while an object lies under it, so ``mkdir`` and ``rmdir`` do nothing.
- No ``flock``: one writer per prefix is a lease object written with conditional requests (``zoo/lease.py``).

Credentials and endpoints come from the stores' usual sources: the AWS environment variables, ``~/.aws`` or an
instance role for S3 (``AWS_ENDPOINT_URL`` for MinIO or another S3-compatible store), Google's application default
credentials for GCS (``STORAGE_EMULATOR_HOST`` for an emulator).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import pyarrow.fs as pafs

from symzoo.errors import ZooError

SCHEMES = ("s3", "gs")
# Checks run before every commit to an object store; zoo.lease installs the one that stops a writer whose lease was
# taken over (a process that holds no lease has not imported it, and needs no check).
COMMIT_GUARDS: list[Callable[[ObjectPath], None]] = []


def default_data_dir() -> Path:
    """Where symzoo keeps local files: decoded data sets, downloads, scratch caches (``$SYMZOO_DATA_DIR``)."""
    return Path(os.environ.get("SYMZOO_DATA_DIR", Path.home() / ".cache" / "symzoo"))


@functools.cache
def _filesystem(scheme: str, bucket: str) -> pafs.FileSystem:
    """One file system per bucket, built once (S3 looks up the bucket's region on the first call)."""
    try:
        if scheme == "gs" and os.environ.get("STORAGE_EMULATOR_HOST"):
            host = os.environ["STORAGE_EMULATOR_HOST"]
            transport, _, endpoint = host.rpartition("://")
            return pafs.GcsFileSystem(anonymous=True, scheme=transport or "http", endpoint_override=endpoint)
        return pafs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]
    except (OSError, ValueError) as e:
        raise ZooError(
            f"cannot reach {scheme}://{bucket} ({str(e).splitlines()[0][:120]}); check the bucket's name and "
            "your credentials"
        ) from None


@dataclass(frozen=True, order=True)
class ObjectPath:
    """A key (or key prefix) in an object-store bucket, used like a ``pathlib.Path``."""

    scheme: str
    key: str  # "bucket/prefix/name", no leading or trailing slash
    info: pafs.FileInfo | None = field(default=None, compare=False, repr=False)  # from a listing, saves a request

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}"

    def __truediv__(self, part: str) -> ObjectPath:
        return ObjectPath(self.scheme, f"{self.key}/{str(part).strip('/')}")

    @property
    def bucket(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def fs(self) -> pafs.FileSystem:
        return _filesystem(self.scheme, self.bucket)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.scheme, self.key.rsplit("/", 1)[0]) if "/" in self.key else self

    def with_suffix(self, suffix: str) -> ObjectPath:
        return self.parent / PurePosixPath(self.name).with_suffix(suffix).name

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(other.key)

    def _file_info(self) -> pafs.FileInfo:
        return self.info if self.info is not None else self._call(self.fs.get_file_info, self.key)

    def exists(self) -> bool:
        return self._file_info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._file_info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._file_info().type == pafs.FileType.File

    def stat(self) -> SimpleNamespace:
        return SimpleNamespace(st_size=self._file_info().size or 0)

    def _listing(self, recursive: bool) -> Iterator[ObjectPath]:
        selector = pafs.FileSelector(self.key, allow_not_found=True, recursive=recursive)
        for info in self._call(self.fs.get_file_info, selector):
            yield ObjectPath(self.scheme, info.path.strip("/"), info)

    def iterdir(self) -> Iterator[ObjectPath]:
        return self._listing(recursive=False)

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Entries directly under this prefix whose name matches ``pattern`` (no ``**``)."""
        return (p for p in self._listing(recursive=False) if fnmatch.fnmatchcase(p.name, pattern))

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        return (p for p in self._listing(recursive=True) if fnmatch.fnmatchcase(p.name, pattern))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is stored under it."""

    def read_bytes(self) -> bytes:
        with self._call(self.fs.open_input_stream, self.key) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        atomic_write_bytes(self, data)

    def write_text(self, text: str) -> None:
        atomic_write_bytes(self, text.encode())

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._call(self.fs.delete_file, self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def replace(self, target: ObjectPath) -> ObjectPath:
        """Server-side copy to ``target``, then delete this object (object stores have no rename)."""
        self._call(self.fs.move, self.key, target.key)
        return target

    def _call(self, fn, *args):
        """Run a file-system call; a missing object is ``FileNotFoundError``; any other failure (denied, no such
        bucket, no network, after pyarrow's own retries) is one ``ZooError`` line."""
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except OSError as e:
            text = str(e)
            if "does not exist" in text or "NoSuchKey" in text or "NOT_FOUND" in text:
                raise FileNotFoundError(errno.ENOENT, f"{self} does not exist") from None
            raise ZooError(
                f"{self}: {text.splitlines()[0][:200]}; check the path, your credentials and the network, then "
                "rerun (finished work is kept)"
            ) from None


Location = Path | ObjectPath


def location(path: str | Path | ObjectPath) -> Location:
    """A local ``Path``, or an ``ObjectPath`` for ``s3://`` and ``gs://``; other URL schemes are refused."""
    if isinstance(path, (Path, ObjectPath)):
        return path
    text = str(path)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Path(text)
    if scheme not in SCHEMES:
        raise ZooError(f"{text}: symzoo stores zoos in local directories, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
    key = rest.strip("/")
    if not key or key.startswith("/") or "//" in key:
        raise ZooError(f"{text} names no bucket and prefix; write {scheme}://BUCKET/PREFIX")
    return ObjectPath(scheme, key)


def local_scratch(path: Location) -> Path:
    """A local directory for files that must be on a local disk (memory-mapped caches): ``path`` itself, or for
    an object-store prefix a folder under ``$SYMZOO_DATA_DIR`` (default ``~/.cache/symzoo``) named after it."""
    if isinstance(path, Path):
        return path
    return default_data_dir() / "scratch" / path.scheme / path.key


def is_within(path: Location, folder: Location) -> bool:
    """``path`` is ``folder`` or lies below it (local paths resolved first: ``..`` and links cannot hide it)."""
    if isinstance(path, ObjectPath) or isinstance(folder, ObjectPath):
        inner, outer = str(path).rstrip("/"), str(folder).rstrip("/")
        return inner == outer or inner.startswith(outer + "/")
    inner, outer = path.resolve(), folder.resolve()
    return inner == outer or outer in inner.parents


def require_reachable(path: Location) -> None:
    """Before a read failure is blamed on a file's bytes (and the file quarantined): on an object store, ask for
    the object afresh, so an unreachable store or a denied request is its own one-line error instead."""
    if isinstance(path, ObjectPath):
        ObjectPath(path.scheme, path.key).exists()  # raises ZooError when the store does not answer


def arrow_path(path: Location) -> tuple[str, pafs.FileSystem]:
    """The path and file system pyarrow reads ``path`` through (``pq.read_table(p, filesystem=fs)``)."""
    if isinstance(path, ObjectPath):
        return path.key, path.fs
    return str(path), pafs.LocalFileSystem()


def atomic_write_bytes(path: Location, data: bytes) -> None:
    """``path`` is either its old self or complete, never half: hidden temporary, then rename (locally: after an
    fsync; on an object store: a server-side copy, see the module's docstring).

    A full disk is one ``ZooError`` line; the temporary is removed and the old file stays as it was.
    """
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    if isinstance(path, ObjectPath):
        for guard in COMMIT_GUARDS:  # zoo.lease's: a writer that lost its lease to another never commits again
            guard(path)
        try:
            with tmp._call(tmp.fs.open_output_stream, tmp.key) as f:
                f.write(data)
            tmp.replace(path)
        except (OSError, ZooError):
            with contextlib.suppress(OSError, ZooError):  # unreachable store: the next run deletes it
                tmp.unlink(missing_ok=True)
            raise
        return
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ZooError(
                f"no space left on the device writing {path}; free some and rerun the same command "
                "(finished work is kept)"
            ) from None
        if isinstance(e, (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            raise ZooError(f"cannot write {path} ({e.strerror}); choose a path you can write to") from None
        raise
