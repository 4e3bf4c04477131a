"""`data.download: true`: streamed to a temporary, checked against the published md5, renamed; served here by a
real HTTP server on 127.0.0.1 with a small archive in CIFAR-10's layout."""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest

from symzoo.zoo import data
from symzoo.zoo.data import DataNotFoundError, load_cifar10


def small_cifar_archive() -> bytes:
    """cifar-10-batches-py with 2 images per training batch and 3 test images, pickled as CIFAR-10 pickles them."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, n in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", 3)]:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
            payload = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.fixture
def server():
    """Serves ``state["body"]``; with ``state["cut"]`` it promises the whole body and closes after part of it."""
    state: dict = {"body": small_cifar_archive(), "cut": None}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = state["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: state["cut"]] if state["cut"] else body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-python.tar.gz"
    yield state
    httpd.shutdown()


def _point_at(monkeypatch, server, md5: str | None = None) -> None:
    monkeypatch.setattr(data, "CIFAR10_URL", server["url"])
    monkeypatch.setattr(data, "CIFAR10_MD5", md5 or hashlib.md5(server["body"]).hexdigest())
    monkeypatch.setattr(data, "shared_data_candidates", lambda name: [])  # no offline copy may answer instead


def test_a_verified_download_is_unpacked_and_read(server, tmp_path, monkeypatch):
    _point_at(monkeypatch, server)
    xtr, ytr, xte, yte = load_cifar10(tmp_path / "root", download=True)
    assert xtr.shape == (10, 3, 32, 32) and xte.shape == (3, 3, 32, 32) and yte.tolist() == [0, 1, 2]
    assert (tmp_path / "root" / "cifar-10-python.tar.gz").read_bytes() == server["body"]


def test_a_wrong_checksum_is_one_line_and_keeps_nothing(server, tmp_path, monkeypatch):
    _point_at(monkeypatch, server, md5="0" * 32)
    with pytest.raises(DataNotFoundError) as caught:
        load_cifar10(tmp_path / "root", download=True)
    message = str(caught.value)
    assert "cifar-10-python.tar.gz" in message and "not the published 000" in message and "\n" not in message
    assert list((tmp_path / "root").iterdir()) == []


def test_an_interrupted_download_leaves_no_archive_for_the_next_run(server, tmp_path, monkeypatch):
    _point_at(monkeypatch, server)
    server["cut"] = 100
    with pytest.raises(DataNotFoundError, match="download from .* failed"):
        load_cifar10(tmp_path / "root", download=True)
    assert list((tmp_path / "root").iterdir()) == []
    server["cut"] = None
    assert load_cifar10(tmp_path / "root", download=True)[0].shape == (10, 3, 32, 32)  # the rerun just works
