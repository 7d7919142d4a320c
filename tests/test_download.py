"""`refava download` against a real HTTP server on 127.0.0.1: Range resume, dropped connections, checksums."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from refava.download import download, fetch_file, load_checksums
from refava.errors import DownloadError


class Server:
    """Serves ``files`` under /trainval/; ``drop_once`` names files whose first GET stops half way; ``pace_s``
    sleeps that long after each 16 KB sent (a slow link, for a download to be killed half way)."""

    def __init__(self, files: dict[str, bytes], drop_once=(), ignore_range=False, pace_s: float = 0.0):
        self.files, self.drop_once, self.ignore_range = files, set(drop_once), ignore_range
        self.pace_s = pace_s
        self.requests: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                name = self.path.rsplit("/", 1)[-1]
                if not self.path.startswith("/trainval/") or name not in server.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None, None
                return name, server.files[name]

            def do_HEAD(self):
                server.requests.append(("HEAD", self.path, None))
                name, data = self._body()
                if data is None:
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(("GET", self.path, rng))
                name, data = self._body()
                if data is None:
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.drop_once:
                    server.drop_once.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if not server.pace_s:
                    self.wfile.write(body)
                    return
                import time

                for at in range(0, len(body), 1 << 14):
                    try:
                        self.wfile.write(body[at:at + (1 << 14)])
                        self.wfile.flush()
                    except OSError:          # the client was killed
                        return
                    time.sleep(server.pace_s)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def blob(n: int, seed: int) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32)


FILES = {"-5KQ66BBWC4.mkv": blob(400_000, 1), "_145Aa_xkuE.mp4": blob(300_000, 2), "abc.webm": blob(200_000, 3)}


def quiet(*_):
    pass


def test_parallel_download_of_all_files(tmp_path):
    with Server(FILES) as srv:
        result = download(list(FILES), tmp_path, base_url=srv.url, workers=3, progress=False, log=quiet)
    assert not result.failed
    for name, data in FILES.items():
        assert (tmp_path / name).read_bytes() == data
    assert not list(tmp_path.glob(".*.part"))


def test_dropped_connection_resumes_with_range(tmp_path):
    name = "-5KQ66BBWC4.mkv"
    with Server(FILES, drop_once={name}) as srv:
        outcome = fetch_file(f"{srv.url}/trainval/{name}", tmp_path / name, backoff_s=0.01)
        gets = [r for r in srv.requests if r[0] == "GET"]
    assert outcome.status == "downloaded" and outcome.attempts == 2
    assert (tmp_path / name).read_bytes() == FILES[name]
    assert gets[0][2] is None and gets[1][2] == f"bytes={len(FILES[name]) // 2}-"


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path):
    name = "abc.webm"
    (tmp_path / f".{name}.part").write_bytes(FILES[name][:12345])
    with Server(FILES) as srv:
        outcome = fetch_file(f"{srv.url}/trainval/{name}", tmp_path / name)
        assert srv.requests[-1] == ("GET", f"/trainval/{name}", "bytes=12345-")
    assert outcome.resumed_from == 12345
    assert (tmp_path / name).read_bytes() == FILES[name]


def test_server_ignoring_range_restarts_the_file(tmp_path):
    name = "abc.webm"
    (tmp_path / f".{name}.part").write_bytes(b"garbage" * 100)
    with Server(FILES, ignore_range=True) as srv:
        outcome = fetch_file(f"{srv.url}/trainval/{name}", tmp_path / name)
    assert outcome.status == "downloaded"
    assert (tmp_path / name).read_bytes() == FILES[name]


def test_checksums_verify_and_a_mismatch_fails_without_a_final_file(tmp_path):
    sums = tmp_path / "sums.txt"
    good = hashlib.sha256(FILES["abc.webm"]).hexdigest()
    bad = hashlib.md5(b"other").hexdigest()
    sums.write_text(f"{good}  abc.webm\n{bad}  _145Aa_xkuE.mp4\n")
    checks = load_checksums(sums)
    out = tmp_path / "movies"
    lines = []
    with Server(FILES) as srv:
        result = download(["abc.webm", "_145Aa_xkuE.mp4"], out, base_url=srv.url, checksums=checks,
                          retries=1, progress=False, log=lines.append)
    assert [o.name for o in result.failed] == ["_145Aa_xkuE.mp4"]
    assert "checksum mismatch" in result.failed[0].error
    assert (out / "abc.webm").exists() and not (out / "_145Aa_xkuE.mp4").exists()
    assert any("FAILED _145Aa_xkuE.mp4" in line for line in lines)


def test_missing_file_is_reported_and_others_complete(tmp_path):
    with Server(FILES) as srv:
        result = download(["abc.webm", "gone0000000.mkv"], tmp_path, base_url=srv.url, progress=False, log=quiet)
    assert [o.name for o in result.failed] == ["gone0000000.mkv"]
    assert "HTTP 404" in result.failed[0].error
    assert result.failed[0].attempts == 1  # a 404 is not retried
    assert (tmp_path / "abc.webm").exists()


def test_complete_files_are_not_downloaded_again(tmp_path):
    with Server(FILES) as srv:
        download(["abc.webm"], tmp_path, base_url=srv.url, progress=False, log=quiet)
        srv.requests.clear()
        result = download(["abc.webm"], tmp_path, base_url=srv.url, progress=False, log=quiet)
        assert [r[0] for r in srv.requests] == ["HEAD"]
    assert result.outcomes[0].status == "exists"


def test_server_down_is_a_counted_failure(tmp_path):
    result = download(["abc.webm"], tmp_path, base_url="http://127.0.0.1:9", retries=1, progress=False, log=quiet)
    assert result.failed and "Connection refused" in result.failed[0].error


@pytest.mark.parametrize("name", ["../x.mkv", "a/b.mkv", "noext"])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(DownloadError, match="refusing file name"):
        download([name], tmp_path, base_url="http://127.0.0.1:9", progress=False, log=quiet)


def test_bad_checksum_list(tmp_path):
    sums = tmp_path / "sums.txt"
    sums.write_text("xyz abc.webm extra\n")
    with pytest.raises(DownloadError, match="sums.txt line 1"):
        load_checksums(sums)
