"""`trt-restore fetch-weights` against a real local HTTP server.

Real checkpoints are 150-370 MB, so the archives here hold the three small VAE files
(synthetic weights, official layout) and `tags=` restricts the run to them.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("torch")

from trt_restore.export import fetch  # noqa: E402
from trt_restore.export.fetch import fetch_weights  # noqa: E402
from trt_restore.export.manifests import checkpoint_path, load_manifest  # noqa: E402
from trt_restore.export.synthetic_weights import synthetic_state, write_synthetic_checkpoint  # noqa: E402

TAGS = ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch")
ARCHIVE = "/global_checkpoints.zip"


# --------------------------------------------------------------------------- fixtures


@dataclass
class FakeRelease:
    """What the test server serves, and what it saw (shared with the handler thread)."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # one-shot: cut the body after N bytes
    ranges: bool = True  # honour Range requests
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    base: str = ""

    def url(self, path: str = ARCHIVE) -> str:
        return self.base + path

    def ranged(self) -> list[str]:
        return [rng for _, rng in self.requests if rng]


def _handler(release: FakeRelease):
    """A GET handler with Range/If-Range support that can drop a connection mid-body."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            rng = self.headers.get("Range")
            release.requests.append((self.path, rng))
            body = release.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            etag = '"%s"' % hashlib.sha1(body).hexdigest()
            start, status = 0, 200
            if_range = self.headers.get("If-Range")
            if release.ranges and rng and if_range in (None, etag):
                start, status = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)), 206
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            payload = body[start:]
            self.send_response(status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("ETag", etag)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            cut = release.drop_after.pop(self.path, None)
            if cut is not None:  # simulate a dropped connection
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def server():
    release = FakeRelease()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(release))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    release.base = f"http://127.0.0.1:{httpd.server_port}"
    yield release
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def release_root(tmp_path_factory) -> Path:
    """The three small checkpoints in the official layout (torch.save once per module)."""
    root = tmp_path_factory.mktemp("release")
    for tag in TAGS:
        write_synthetic_checkpoint(root, tag)
    return root


def make_zip(root: Path, tags=TAGS, with_folder: bool = False, extra: dict[str, bytes] | None = None) -> bytes:
    """Zip like the official archive (members start with checkpoints/) or re-packed with Global/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for tag in tags:
            rel = load_manifest(tag).official_file
            archive.write(checkpoint_path(root, tag), rel if with_folder else rel.split("/", 1)[1])
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def good_zip(release_root) -> bytes:
    return make_zip(release_root)


def run(cache: Path, release: FakeRelease, **kwargs) -> int:
    kwargs.setdefault("tags", TAGS)
    kwargs.setdefault("retries", 0)
    return fetch_weights(cache, global_url=kwargs.pop("url", release.url()), face_url=None,
                         include_faces=False, **kwargs)


def snapshot(cache: Path, tags=TAGS) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of installed checkpoints, to prove they were left untouched."""
    return {tag: (checkpoint_path(cache, tag).read_bytes(), checkpoint_path(cache, tag).stat().st_mtime_ns)
            for tag in tags}


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def _fast_and_wide(monkeypatch):
    """No retry back-off; a console wide enough that table cells are not folded."""
    monkeypatch.setattr(fetch, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setenv("COLUMNS", "300")


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("with_folder", [False, True], ids=["checkpoints-root", "Global-root"])
def test_happy_path_then_nothing_to_do(tmp_path, server, release_root, with_folder, capsys, monkeypatch):
    server.files[ARCHIVE] = make_zip(release_root, with_folder=with_folder)
    cache = tmp_path / "cache"
    assert run(cache, server) == 0
    for tag in TAGS:
        assert checkpoint_path(cache, tag).read_bytes() == checkpoint_path(release_root, tag).read_bytes()
    verified = json.loads((cache / "verified.json").read_text())["files"]
    assert set(verified) == set(TAGS)
    for tag in TAGS:
        path = checkpoint_path(cache, tag)
        assert verified[tag]["path"] == load_manifest(tag).official_file
        assert verified[tag]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert verified[tag]["size"] == path.stat().st_size
    assert not any((cache / "downloads").iterdir()), "archive is removed once its content is verified"
    assert not list(cache.glob(".staging-*"))
    assert "ok" in capsys.readouterr().out

    # second run: no request, no torch.load (verified.json says the files are unchanged)
    seen = len(server.requests)
    monkeypatch.setattr(fetch, "read_state_dict", lambda *a: pytest.fail("re-verified an unchanged file"))
    assert run(cache, server) == 0
    assert len(server.requests) == seen
    assert "nothing to download" in one_line(capsys.readouterr().out)


def test_changed_file_is_reverified(tmp_path, server, good_zip):
    server.files[ARCHIVE] = good_zip
    cache = tmp_path / "cache"
    assert run(cache, server) == 0
    calls = []
    original = fetch.read_state_dict
    path = checkpoint_path(cache, "VAE_B_quality")
    path.write_bytes(path.read_bytes())  # same content, new mtime
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fetch, "read_state_dict", lambda p, tag: calls.append(tag) or original(p, tag))
        assert run(cache, server) == 0
    assert calls == ["VAE_B_quality"]


def test_damaged_local_file_is_fetched_again(tmp_path, server, good_zip, release_root, capsys):
    server.files[ARCHIVE] = good_zip
    cache = tmp_path / "cache"
    assert run(cache, server) == 0
    checkpoint_path(cache, "VAE_A_quality").write_bytes(b"garbage")
    assert run(cache, server) == 0
    assert "VAE_A_quality" in capsys.readouterr().err  # the damaged file was reported
    assert (checkpoint_path(cache, "VAE_A_quality").read_bytes()
            == checkpoint_path(release_root, "VAE_A_quality").read_bytes())


def test_files_already_in_place_are_not_downloaded(tmp_path, server, release_root, capsys):
    cache = tmp_path / "cache"
    for tag in TAGS:  # e.g. unpacked by hand
        target = checkpoint_path(cache, tag)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(checkpoint_path(release_root, tag).read_bytes())
    assert run(cache, server) == 0
    assert server.requests == []
    assert set(json.loads((cache / "verified.json").read_text())["files"]) == set(TAGS)
    assert "already present and verified" in one_line(capsys.readouterr().out)


# --------------------------------------------------------------------------- resume


def test_resume_after_dropped_connection(tmp_path, server, good_zip, capsys):
    server.files[ARCHIVE] = good_zip
    half = len(good_zip) // 2
    server.drop_after[ARCHIVE] = half
    cache = tmp_path / "cache"

    assert run(cache, server) == 1
    err = capsys.readouterr().err
    assert "truncated" in err and server.url() in err and f"{half} of {len(good_zip)}" in err
    part = cache / "downloads" / "global_checkpoints.zip.part"
    assert part.stat().st_size == half
    assert not checkpoint_path(cache, "VAE_A_quality").exists()

    assert run(cache, server) == 0
    assert server.ranged() == [f"bytes={half}-"]
    assert not part.exists()
    assert all(checkpoint_path(cache, tag).is_file() for tag in TAGS)


def test_retry_resumes_within_one_run(tmp_path, server, good_zip):
    server.files[ARCHIVE] = good_zip
    server.drop_after[ARCHIVE] = 1000
    assert run(tmp_path / "cache", server, retries=1) == 0
    assert server.ranged() == ["bytes=1000-"]
    assert len(server.requests) == 2


def test_server_without_range_support_restarts(tmp_path, server, good_zip, capsys):
    server.files[ARCHIVE] = good_zip
    server.drop_after[ARCHIVE] = 5000
    cache = tmp_path / "cache"
    assert run(cache, server) == 1
    server.ranges = False  # answers 200 with the whole file: the .part must be overwritten
    assert run(cache, server) == 0
    assert "starting again from zero" in one_line(capsys.readouterr().out)


def test_changed_file_on_server_restarts_download(tmp_path, server, release_root, good_zip):
    server.files[ARCHIVE] = make_zip(release_root, tags=TAGS[:1])  # an older, different archive
    server.drop_after[ARCHIVE] = 5000
    cache = tmp_path / "cache"
    assert run(cache, server) == 1
    server.files[ARCHIVE] = good_zip  # ETag changes: If-Range makes the server send it whole
    assert run(cache, server) == 0
    assert all(checkpoint_path(cache, tag).is_file() for tag in TAGS)


# --------------------------------------------------------------------------- bad archives


def test_corrupt_archive_keeps_good_files(tmp_path, server, good_zip, capsys):
    server.files[ARCHIVE] = good_zip
    cache = tmp_path / "cache"
    assert run(cache, server) == 0
    checkpoint_path(cache, "VAE_B_scratch").unlink()  # something to fetch again
    before = snapshot(cache, TAGS[:2])
    capsys.readouterr()

    corrupt = bytearray(good_zip)
    for i in range(len(corrupt) // 2, len(corrupt) // 2 + 64):
        corrupt[i] ^= 0xFF
    server.files[ARCHIVE] = bytes(corrupt)
    assert run(cache, server) == 1
    err = one_line(capsys.readouterr().err)
    assert "global_checkpoints.zip: corrupt archive" in err
    assert snapshot(cache, TAGS[:2]) == before
    assert not checkpoint_path(cache, "VAE_B_scratch").exists()
    assert set(json.loads((cache / "verified.json").read_text())["files"]) == set(TAGS[:2])
    assert (cache / "downloads" / "global_checkpoints.zip.bad").is_file()

    server.files[ARCHIVE] = good_zip  # the next run downloads afresh and succeeds
    assert run(cache, server) == 0


def test_bad_copy_in_archive_does_not_replace_verified_file(tmp_path, server, good_zip, release_root):
    import torch

    server.files[ARCHIVE] = good_zip
    cache = tmp_path / "cache"
    assert run(cache, server) == 0
    checkpoint_path(cache, "VAE_A_quality").unlink()  # only this one is wanted next time
    before = snapshot(cache, TAGS[1:])

    bad_root = tmp_path / "bad"
    for tag in TAGS:
        target = checkpoint_path(bad_root, tag)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(checkpoint_path(release_root, tag).read_bytes())
    torch.save({"junk": torch.zeros(1)}, checkpoint_path(bad_root, "VAE_B_quality"))
    server.files[ARCHIVE] = make_zip(bad_root)
    assert run(cache, server) == 0
    assert snapshot(cache, TAGS[1:]) == before
    assert checkpoint_path(cache, "VAE_A_quality").is_file()


def test_not_a_zip(tmp_path, server, capsys):
    server.files[ARCHIVE] = b"<html>rate limited</html>"
    assert run(tmp_path / "cache", server) == 1
    assert "global_checkpoints.zip: not a valid zip archive" in one_line(capsys.readouterr().err)


def test_wrong_shape_names_file_and_key(tmp_path, server, release_root, capsys):
    import torch

    bad_root = tmp_path / "bad"
    for tag in TAGS:
        target = checkpoint_path(bad_root, tag)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(checkpoint_path(release_root, tag).read_bytes())
    state = {k: torch.from_numpy(v) for k, v in synthetic_state("VAE_B_quality").items()}
    key = next(iter(state))
    state[key] = torch.zeros(7, 7)
    torch.save(state, checkpoint_path(bad_root, "VAE_B_quality"))
    server.files[ARCHIVE] = make_zip(bad_root)

    cache = tmp_path / "cache"
    assert run(cache, server) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if key in line]
    assert lines and "restoration/VAE_B_quality/latest_net_G.pth" in lines[0]
    assert "(7, 7)" in lines[0]
    assert not checkpoint_path(cache, "VAE_B_quality").exists(), "a bad checkpoint is never installed"
    assert checkpoint_path(cache, "VAE_A_quality").is_file() and checkpoint_path(cache, "VAE_B_scratch").is_file()
    assert set(json.loads((cache / "verified.json").read_text())["files"]) == {"VAE_A_quality", "VAE_B_scratch"}
    assert "error" in captured.out


@pytest.mark.parametrize("evil", ["../escape.pth", "/abs/escape.pth", "checkpoints/../../escape.pth"])
def test_zip_slip_is_refused(tmp_path, server, release_root, evil, capsys):
    server.files[ARCHIVE] = make_zip(release_root, extra={evil: b"x"})
    cache = tmp_path / "cache"
    assert run(cache, server) == 1
    assert "unsafe member path" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "escape.pth").exists() and not (cache.parent / "escape.pth").exists()
    assert not checkpoint_path(cache, "VAE_A_quality").exists()


def test_missing_checkpoint_in_archive(tmp_path, server, release_root, capsys):
    server.files[ARCHIVE] = make_zip(release_root, tags=TAGS[:2])
    cache = tmp_path / "cache"
    assert run(cache, server) == 1
    out = one_line(capsys.readouterr().out)
    assert "missing" in out and "not in global_checkpoints.zip" in out
    assert (cache / "downloads" / "global_checkpoints.zip").is_file(), "kept: a rerun needs no download"


def test_http_404(tmp_path, server, capsys):
    url = server.url("/nope.zip")
    assert run(tmp_path / "cache", server, url=url, retries=2) == 1
    err = one_line(capsys.readouterr().err)
    assert f"{url}: HTTP 404" in err
    assert len(server.requests) == 1, "a 404 is not retried"
    assert not list((tmp_path / "cache" / "downloads").glob("*.part"))


def test_connection_refused(tmp_path, capsys):
    url = "http://127.0.0.1:9/global_checkpoints.zip"  # discard port: nothing listens
    assert fetch_weights(tmp_path / "cache", global_url=url, include_faces=False, tags=TAGS, retries=0) == 1
    assert f"{url}: cannot connect" in one_line(capsys.readouterr().err)


def test_complete_part_file_is_not_downloaded_again(tmp_path, server, good_zip):
    """Killed between the last byte and the rename: the server answers 416 to the resume."""
    server.files[ARCHIVE] = good_zip
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "global_checkpoints.zip.part").write_bytes(good_zip)
    (downloads / "global_checkpoints.zip.source.json").write_text(json.dumps({"url": server.url()}))
    assert run(tmp_path / "cache", server) == 0
    assert server.ranged() == [f"bytes={len(good_zip)}-"]


def test_partial_download_from_another_url_is_discarded(tmp_path, server, good_zip):
    server.files[ARCHIVE] = good_zip
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "global_checkpoints.zip.part").write_bytes(b"x" * 100)
    (downloads / "global_checkpoints.zip.source.json").write_text(json.dumps({"url": "http://old/mirror.zip"}))
    assert run(tmp_path / "cache", server) == 0
    assert server.ranged() == []


def test_force_reverifies_everything(tmp_path, server, good_zip, monkeypatch):
    server.files[ARCHIVE] = good_zip
    cache = tmp_path / "cache"
    assert run(cache, server) == 0
    calls = []
    original = fetch.read_state_dict
    monkeypatch.setattr(fetch, "read_state_dict", lambda p, tag: calls.append(tag) or original(p, tag))
    assert run(cache, server, force=True) == 0
    assert sorted(calls) == sorted(TAGS)


def test_second_run_on_same_cache_is_refused(tmp_path, server, capsys):
    fcntl = pytest.importorskip("fcntl")
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / ".fetch.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run(cache, server) == 1
    assert "another fetch-weights run" in one_line(capsys.readouterr().err)
    assert server.requests == []


# --------------------------------------------------------------------------- layout & selection


def test_member_targets_for_both_archives(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("checkpoints/FaceSR_512/latest_net_G.pth", b"a")
        archive.writestr("Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth", b"b")
        archive.writestr("__MACOSX/checkpoints/._x", b"c")
        archive.writestr("checkpoints/", b"")
    with zipfile.ZipFile(buffer) as archive:
        targets = fetch.member_targets(archive, "Face_Enhancement", tmp_path / "face_checkpoints.zip")
    assert targets == {
        "checkpoints/FaceSR_512/latest_net_G.pth": "Face_Enhancement/checkpoints/FaceSR_512/latest_net_G.pth",
        "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth":
            "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth",
    }
    assert set(targets.values()) == {load_manifest(t).official_file for t in ("FaceSR_512", "Setting_9_epoch_100")}


def test_urls_option_env_default(monkeypatch):
    monkeypatch.delenv(fetch.GLOBAL_URL_ENV, raising=False)
    monkeypatch.setenv(fetch.FACE_URL_ENV, "http://mirror/face.zip")
    archives = fetch.plan_archives(None, None, fetch.select_tags(None, include_faces=True))
    assert [(a.name, a.url, len(a.tags)) for a in archives] == [
        ("global_checkpoints", fetch.GLOBAL_URL, 7), ("face_checkpoints", "http://mirror/face.zip", 2)]
    assert fetch.plan_archives(None, "http://option/f.zip", ("FaceSR_512",))[0].url == "http://option/f.zip"
    assert fetch.select_tags(None, include_faces=False) == fetch.GLOBAL_TAGS


# --------------------------------------------------------------------------- command line


def test_cli_success_with_env_url(tmp_path, server, good_zip, monkeypatch):
    from typer.testing import CliRunner

    from trt_restore.cli import app

    server.files[ARCHIVE] = good_zip
    monkeypatch.setattr(fetch, "GLOBAL_TAGS", TAGS)  # the CLI fetches every global tag
    monkeypatch.setenv(fetch.GLOBAL_URL_ENV, server.url())
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["fetch-weights", "--cache-dir", str(cache), "--no-faces"])
    assert result.exit_code == 0, result.output
    assert all(checkpoint_path(cache, tag).is_file() for tag in TAGS)
    assert "VAE_B_scratch" in result.output


def test_cli_reports_missing_and_fails(tmp_path, server, good_zip, monkeypatch):
    from typer.testing import CliRunner

    from trt_restore.cli import app

    server.files[ARCHIVE] = good_zip
    monkeypatch.setenv(fetch.GLOBAL_URL_ENV, server.url("/not-used.zip"))  # the option wins
    result = CliRunner().invoke(app, ["fetch-weights", "-d", str(tmp_path / "cache"), "--no-faces",
                                      "--global-url", server.url(), "--retries", "0"])
    assert result.exit_code == 1
    output = one_line(result.output)
    assert "mapping_scratch" in output and "not in global_checkpoints.zip" in output
    assert [path for path, _ in server.requests] == [ARCHIVE]


def test_cli_http_error(tmp_path, server):
    from typer.testing import CliRunner

    from trt_restore.cli import app

    url = server.url("/gone.zip")
    result = CliRunner().invoke(app, ["fetch-weights", "-d", str(tmp_path / "c"), "--global-url", url,
                                      "--no-faces"])
    assert result.exit_code == 1
    assert f"{url}: HTTP 404" in result.output
