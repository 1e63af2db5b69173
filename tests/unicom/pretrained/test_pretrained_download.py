"""The release downloader, against an HTTP server on loopback started here (never the internet)."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

import unicom
from unicom.pretrained import registry
from unicom.pretrained.download import ChecksumError, cache_dir, download, download_pretrained


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture()
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (base URL, served directory)."""
    www = tmp_path / "www"
    www.mkdir()
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(CountingHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()


def _payload(www, name="blob.bin", size=300_000):
    data = bytes(range(256)) * (size // 256)
    (www / name).write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


def test_right_checksum_is_accepted(server, tmp_path):
    base, www = server
    data, sha = _payload(www)
    dest = tmp_path / "cache" / "blob.bin"
    assert download(f"{base}/blob.bin", dest, sha256=sha, progress=False) == dest
    assert dest.read_bytes() == data
    assert not list(dest.parent.glob("*.tmp"))


def test_wrong_checksum_is_refused_and_leaves_nothing(server, tmp_path):
    base, www = server
    _payload(www)
    dest = tmp_path / "cache" / "blob.bin"
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        download(f"{base}/blob.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists()
    assert not list(dest.parent.glob("*.tmp")), "the partial download must be removed"


def test_cached_file_with_the_right_sum_is_reused_and_a_wrong_one_is_replaced(server, tmp_path):
    base, www = server
    data, sha = _payload(www)
    dest = tmp_path / "blob.bin"
    download(f"{base}/blob.bin", dest, sha256=sha, progress=False)
    assert len(CountingHandler.requests) == 1
    download(f"{base}/blob.bin", dest, sha256=sha, progress=False)
    assert len(CountingHandler.requests) == 1, "a verified cached file needs no request"
    dest.write_bytes(b"corrupted")
    with pytest.warns(UserWarning, match="SHA-256"):
        download(f"{base}/blob.bin", dest, sha256=sha, progress=False)
    assert len(CountingHandler.requests) == 2 and dest.read_bytes() == data


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(ConnectionError, match="could not download"):
        download("http://127.0.0.1:9/none.pt", tmp_path / "none.pt", sha256="0" * 64, progress=False, timeout=5)
    assert not (tmp_path / "none.pt").exists()


def test_missing_file_on_the_server(server, tmp_path):
    base, _ = server
    with pytest.raises(ConnectionError, match="404"):
        download(f"{base}/nothing.pt", tmp_path / "nothing.pt", progress=False)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNICOM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("UNICOM_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "unicom")


def test_load_by_name_downloads_verifies_and_caches(server, tmp_path, monkeypatch):
    """A release served from a loopback mirror: the first load downloads it into the cache, a
    second one reads the cache, and a file with the wrong sum never lands there."""
    from tests.unicom.pretrained.support import random_official_state

    base, www = server
    spec = registry.MODELS["ViT-B/32"]
    (www / spec.tag).mkdir()
    state = random_official_state("ViT-Tiny/8@32")
    torch.save(state, www / spec.tag / spec.filename)
    sha = hashlib.sha256((www / spec.tag / spec.filename).read_bytes()).hexdigest()
    monkeypatch.setenv("UNICOM_MIRROR", base)
    monkeypatch.setenv("UNICOM_CACHE", str(tmp_path / "cache"))
    assert registry.MODELS["ViT-B/32"].url == f"{base}/{spec.tag}/{spec.filename}"

    # The published sum is that of the real release: this file is refused.
    with pytest.raises(ChecksumError):
        download_pretrained("ViT-B/32", progress=False)
    assert not (tmp_path / "cache" / spec.filename).exists()

    monkeypatch.setitem(registry.MODELS, "ViT-B/32", dataclasses.replace(spec, sha256=sha))
    path = download_pretrained("ViT-B/32", progress=False)
    assert path == tmp_path / "cache" / spec.filename and path.is_file()
    n = len(CountingHandler.requests)
    # The file holds a tiny network, so loading it under the B/32 name is refused as not official.
    with pytest.raises(ValueError, match="not the official one"):
        unicom.load("ViT-B/32", device="cpu")
    assert len(CountingHandler.requests) == n
