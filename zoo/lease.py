"""One writer per object-store prefix: a lease object ``PREFIX/.lock`` written with conditional requests.

Object stores have no ``flock``, but both S3 (``If-None-Match: *`` / ``If-Match: ETAG``, since 2024) and GCS
(``ifGenerationMatch``) refuse a write whose precondition fails, atomically. The protocol:

- take: create the lease only if no object has its name. Exactly one of two racing writers succeeds.
- renew: a background thread rewrites it every ``ttl / 3`` seconds, only if it is still the version this writer
  wrote, and moves its expiry forward.
- a lease found held: refused in one line naming the holder, unless it is stale: its holder's process is gone
  (same kernel boot and pid namespace, no such pid: ``zoo.holder.kernel_identity``; a host name alone is shared by
  containers), or its expiry has passed and it does not change during one renewal interval (so a clock that runs
  ahead does not steal a live lease). A stale lease is replaced only if it is still the version
  that was judged stale, so two writers taking over the same dead lease cannot both win.
- lost: a renewal that finds another writer's version means this writer stalled past ``ttl`` and was taken over;
  every later commit under the prefix then raises (``check_lease``), so two writers never interleave commits. A
  commit also renews first when the last renewal is more than two thirds of ``ttl`` old (a process that was
  suspended, a laptop that slept), so it never commits on a lease that may have expired meanwhile.
- release: delete the lease if it is still this writer's version.

The S3 side needs ``boto3``, the GCS side ``google-cloud-storage`` (``pip install 'symzoo[s3]'`` / ``[gcs]``).
``SYMZOO_LEASE_SECONDS`` sets ``ttl`` (default 60 s).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from symzoo.errors import ZooError
from symzoo.zoo.holder import LOCK_FILE, busy, describe_holder, holder_record, kernel_identity
from symzoo.zoo.location import COMMIT_GUARDS, ObjectPath


class ConditionalStore:
    """The four conditional requests a lease needs; ``token`` is an ETag (S3) or a generation (GCS)."""

    def create(self, key: str, body: bytes) -> str | None: ...  # None: an object has that name

    def read(self, key: str) -> tuple[bytes, str] | None: ...  # None: no such object

    def replace(self, key: str, body: bytes, token: str) -> str | None: ...  # None: not that version any more

    def delete(self, key: str, token: str) -> bool: ...


class S3Store(ConditionalStore):
    def __init__(self, bucket: str) -> None:
        try:
            import boto3
            from botocore.exceptions import ClientError
        except ImportError:
            raise ZooError("s3:// paths need boto3 for their writer lease; pip install 'symzoo[s3]'") from None
        self.bucket, self.client, self.error = bucket, boto3.client("s3"), ClientError

    def _refused(self, e: Exception) -> bool:
        code = e.response.get("Error", {}).get("Code", "")
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")

    def create(self, key, body):
        try:
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")["ETag"]
        except self.error as e:
            if self._refused(e):
                return None
            raise

    def read(self, key):
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.error as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return got["Body"].read(), got["ETag"]

    def replace(self, key, body, token):
        try:
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfMatch=token)["ETag"]
        except self.error as e:
            if self._refused(e) or e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def delete(self, key, token):
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=token)
            return True
        except self.error as e:
            if self._refused(e) or e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise


class GcsStore(ConditionalStore):
    def __init__(self, bucket: str) -> None:
        try:
            from google.api_core import exceptions
            from google.cloud import storage
        except ImportError:
            raise ZooError(
                "gs:// paths need google-cloud-storage for their writer lease; pip install 'symzoo[gcs]'"
            ) from None
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            client = storage.Client.create_anonymous_client()
        else:
            client = storage.Client()
        self.bucket, self.errors = client.bucket(bucket), exceptions

    def create(self, key, body):
        blob = self.bucket.blob(key)
        try:
            blob.upload_from_string(body, if_generation_match=0)
        except self.errors.PreconditionFailed:
            return None
        return str(blob.generation)

    def read(self, key):
        blob = self.bucket.get_blob(key)
        if blob is None:
            return None
        try:
            return blob.download_as_bytes(if_generation_match=blob.generation), str(blob.generation)
        except (self.errors.PreconditionFailed, self.errors.NotFound):
            return None

    def replace(self, key, body, token):
        blob = self.bucket.blob(key)
        try:
            blob.upload_from_string(body, if_generation_match=int(token))
        except (self.errors.PreconditionFailed, self.errors.NotFound):
            return None
        return str(blob.generation)

    def delete(self, key, token):
        try:
            self.bucket.blob(key).delete(if_generation_match=int(token))
            return True
        except (self.errors.PreconditionFailed, self.errors.NotFound):
            return False


def conditional_store(folder: ObjectPath) -> ConditionalStore:
    return S3Store(folder.bucket) if folder.scheme == "s3" else GcsStore(folder.bucket)


def lease_seconds() -> float:
    return float(os.environ.get("SYMZOO_LEASE_SECONDS", "60"))


@dataclass
class Lease:
    """A held lease on ``folder``; ``lost`` turns true if another writer took it over."""

    folder: ObjectPath
    store: ConditionalStore
    key: str
    token: str
    record: dict
    ttl: float
    lost: bool = False
    renewed_at: float = field(default_factory=time.monotonic)
    _renewing: threading.Lock = field(default_factory=threading.Lock)  # the thread and a commit both renew

    def body(self) -> bytes:
        return json.dumps(self.record | {"expires": time.time() + self.ttl}).encode()

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.renewed_at < self.ttl * 2 / 3

    def renew(self) -> None:
        """Rewrite the lease if it is still this writer's version; otherwise it is lost, for good."""
        with self._renewing:
            if self.lost:
                return
            token = self.store.replace(self.key, self.body(), self.token)
            if token is None:
                self.lost = True
                print(
                    f"symzoo: error: {self.folder} was taken over by another writer after this one missed its "
                    "lease renewals; this run commits nothing more",
                    file=sys.stderr,
                )
                return
            self.token, self.renewed_at = token, time.monotonic()

    def renew_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3) and not self.lost:
            try:
                self.renew()
            except Exception as e:  # a network blip: try again at the next interval, the lease has time left
                print(f"symzoo: warning: renewing the lease on {self.folder} failed ({e}); retrying", file=sys.stderr)


_HELD: dict[str, Lease] = {}  # prefix -> this process's lease on it


def check_lease(path: ObjectPath) -> None:
    """Raise before a commit under a prefix whose lease this process held and lost (renewing a stale one first)."""
    for prefix, lease in _HELD.items():
        if not (str(path) + "/").startswith(prefix + "/"):
            continue
        if not lease.fresh:
            with _one_line(f"cannot renew the writer lease on {prefix}"):
                lease.renew()
        if lease.lost:
            raise ZooError(
                f"lost the writer lease on {prefix} to another writer; stop this run and rerun it "
                "once the other one has finished"
            )


@contextmanager
def _one_line(what: str) -> Iterator[None]:
    """A store's own exception (no such bucket, denied, no network) as one ``ZooError`` line with the fix."""
    try:
        yield
    except ZooError:
        raise
    except Exception as e:
        why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ZooError(f"{what} ({why}); check the bucket's name, your credentials and the network") from None


def _holder_is_dead(record: dict) -> bool:
    """The holder is provably a process of this kernel's pid namespace that is gone: stale at once, no waiting.
    Any other holder (another machine or container, even one with this host name) is stale only on expiry."""
    here = kernel_identity()
    if here is None or record.get("kernel") != here or record.get("host") != socket.gethostname():
        return False
    if not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _take(folder: ObjectPath, store: ConditionalStore, key: str, record: dict, ttl: float) -> Lease:
    lease = Lease(folder, store, key, "", record, ttl)
    for _ in range(5):  # a lease can vanish between our create and read: look again
        token = store.create(key, lease.body())
        if token is not None:
            lease.token = token
            return lease
        found = store.read(key)
        if found is None:
            continue
        body, token = found
        try:
            held = json.loads(body)
        except ValueError:
            held = {}
        stale = _holder_is_dead(held)
        if not stale and time.time() > held.get("expires", 0):
            time.sleep(ttl / 3 + 1)  # expired by our clock: stale only if its holder does not renew it now
            again = store.read(key)
            stale = again is not None and again[1] == token
            if again is None:
                continue
        if not stale:
            raise busy(folder, held)
        token = store.replace(key, lease.body(), token)
        if token is None:
            raise ZooError(f"{folder} was just taken over by another writer; wait for it to finish")
        print(f"symzoo: took over the stale lease of {describe_holder(held)} on {folder}", file=sys.stderr)
        lease.token = token
        return lease
    raise ZooError(f"could not take the writer lease on {folder}: it keeps appearing and vanishing; retry")


@contextmanager
def object_lease(folder: ObjectPath, command: str) -> Iterator[Lease]:
    """Hold ``folder``'s lease for the ``with`` block (renewed in the background, released at the end)."""
    key = (folder / LOCK_FILE).key.split("/", 1)[1]  # the lock file's name: holds_anything ignores it
    record = holder_record(command)
    with _one_line(f"cannot take the writer lease on {folder}"):  # the client's set-up can fail too (no region)
        store = conditional_store(folder)
        lease = _take(folder, store, key, record, lease_seconds())
    stop = threading.Event()
    renewer = threading.Thread(target=lease.renew_forever, args=(stop,), daemon=True, name="symzoo-lease")
    renewer.start()
    _HELD[str(folder)] = lease
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()
        _HELD.pop(str(folder), None)
        if not lease.lost:
            try:
                store.delete(key, lease.token)
            except Exception as e:  # the work is done and stored; a lease left behind expires on its own
                print(f"symzoo: warning: could not release the lease on {folder} ({e})", file=sys.stderr)


COMMIT_GUARDS.append(check_lease)
