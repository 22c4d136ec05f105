"""`trt-restore fetch-weights`: download, unpack and verify the official checkpoints.

The release archives are large and downloads from GitHub get cut, so a download resumes
from its `.part` file with HTTP Range. A bad archive must never cost the user files that
were already good: every archive is CRC-checked first, unpacked into a staging folder
under the cache, each checkpoint is verified against its manifest *there*, and only then
moved into place one file at a time (`os.replace`, atomic on one file system). Verified
files are remembered by size, mtime and sha256 in `<cache>/verified.json`, so a rerun
neither downloads nor re-loads anything that is unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .checkpoints import CheckpointError, read_state_dict
from .manifests import ALL_TAGS, FACE_TAGS, GLOBAL_TAGS, checkpoint_path, load_manifest

try:  # POSIX only; without it two concurrent runs are simply not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

RELEASE_URL = "https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life/releases/download/v1.0"
GLOBAL_URL = f"{RELEASE_URL}/global_checkpoints.zip"
FACE_URL = f"{RELEASE_URL}/face_checkpoints.zip"
GLOBAL_URL_ENV = "TRT_RESTORE_GLOBAL_URL"
FACE_URL_ENV = "TRT_RESTORE_FACE_URL"

VERIFIED_FILE = "verified.json"
DOWNLOADS_DIR = "downloads"
STAGING_PREFIX = ".staging-"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not for the whole download
RETRY_BACKOFF_S = 2.0  # multiplied by the attempt number
USER_AGENT = "trt-restore-fetch-weights"
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}

STATUS_STYLE = {"ok": "green", "missing": "yellow", "error": "red"}


class FetchError(RuntimeError):
    """A download or archive cannot be used; the message is one line naming the URL or file.

    `transient` says whether trying again may help (dropped connection, 5xx), as opposed
    to a 404 or a corrupt archive, which a retry would only repeat.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class BadArchive(FetchError):
    """The archive itself is unusable (corrupt, unsafe, wrong content): downloading it
    again is the only remedy, unlike a full disk, which a new download would not fix."""


@dataclass(frozen=True)
class Archive:
    """One release archive: its URL, the project folder it unpacks into, and its tags."""

    name: str  # file name without .zip, as on the release page
    url: str
    folder: str  # "Global" or "Face_Enhancement"
    tags: tuple[str, ...]

    @property
    def zip_name(self) -> str:
        return f"{self.name}.zip"


@dataclass
class TagResult:
    """State of one checkpoint for the summary table."""

    tag: str
    status: str  # ok / missing / error
    detail: str = ""


# --------------------------------------------------------------------------- selection


def resolve_url(explicit: str | None, env_var: str, default: str) -> str:
    """Command-line option beats environment variable beats the official release."""
    return explicit or os.environ.get(env_var) or default


def select_tags(tags, include_faces: bool) -> tuple[str, ...]:
    """Tags to fetch; read at call time so the defaults follow the manifests module."""
    chosen = tuple(GLOBAL_TAGS + (FACE_TAGS if include_faces else ())) if tags is None else tuple(tags)
    unknown = [tag for tag in chosen if tag not in ALL_TAGS]
    if unknown:
        raise ValueError(f"unknown checkpoint tag(s) {', '.join(unknown)}; known: {', '.join(ALL_TAGS)}")
    if not include_faces:
        chosen = tuple(tag for tag in chosen if tag not in FACE_TAGS)
    return chosen


def plan_archives(global_url: str | None, face_url: str | None, tags: tuple[str, ...]) -> list[Archive]:
    """The archives that hold `tags`, each restricted to the requested tags it holds."""
    archives = [
        Archive("global_checkpoints", resolve_url(global_url, GLOBAL_URL_ENV, GLOBAL_URL), "Global",
                tuple(t for t in tags if t not in FACE_TAGS)),
        Archive("face_checkpoints", resolve_url(face_url, FACE_URL_ENV, FACE_URL), "Face_Enhancement",
                tuple(t for t in tags if t in FACE_TAGS)),
    ]
    return [archive for archive in archives if archive.tags]


# --------------------------------------------------------------------------- verification


def sha256_of(path: Path) -> str:
    """Fingerprint recorded in verified.json, for users comparing their files."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict:
    """Size and mtime: cheap evidence that a verified file was not touched since."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def load_verified(cache_dir: Path) -> dict[str, dict]:
    """Entries of verified.json by tag; a missing or damaged file just means re-verifying."""
    try:
        files = json.loads((cache_dir / VERIFIED_FILE).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _write_json_atomic(path: Path, data: dict) -> None:
    """Temp file + rename, so an interrupted run never leaves half a JSON file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_verified(cache_dir: Path, entries: dict[str, dict]) -> None:
    """Persist what is known good (tags not checked in this run keep their entries)."""
    _write_json_atomic(cache_dir / VERIFIED_FILE, {"format": 1, "files": entries})


def is_known_good(entry, path: Path, rel: str) -> bool:
    """True when `path` is exactly the file verified earlier (same place, size and mtime)."""
    try:
        stamp = _stamp(path)
    except OSError:
        return False
    return (isinstance(entry, dict) and entry.get("path") == rel and "sha256" in entry
            and entry.get("size") == stamp["size"] and entry.get("mtime_ns") == stamp["mtime_ns"])


def verify_file(path: Path, tag: str, shown_as: str | None = None) -> dict:
    """Load `path` against the manifest of `tag` (CheckpointError if unusable) and fingerprint it.

    `shown_as` replaces the path in error messages: a file still in the staging folder is
    better named by its place in the archive than by a temp path that is about to vanish.
    """
    try:
        read_state_dict(path, tag)
    except CheckpointError as err:
        if shown_as is None:
            raise
        raise CheckpointError(str(err).replace(str(path), shown_as, 1)) from err
    return {"sha256": sha256_of(path), **_stamp(path)}


def check_installed(cache_dir: Path, tag: str, entries: dict[str, dict]) -> TagResult:
    """State of the file already in the cache; updates `entries` when it (re)verifies."""
    path = checkpoint_path(cache_dir, tag)
    rel = load_manifest(tag).official_file
    if not path.is_file():
        entries.pop(tag, None)
        return TagResult(tag, "missing", "not downloaded yet")
    if is_known_good(entries.get(tag), path, rel):
        return TagResult(tag, "ok", "verified earlier, unchanged")
    try:
        entries[tag] = {"path": rel, **verify_file(path, tag)}
    except CheckpointError as err:
        entries.pop(tag, None)
        return TagResult(tag, "error", str(err))
    return TagResult(tag, "ok", "verified")


# --------------------------------------------------------------------------- download


def _read_json(path: Path) -> dict:
    """Best-effort read of a small side file; anything unreadable counts as absent."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _source_file(dest: Path) -> Path:
    """Side file recording which URL (and validators) a .part / .zip came from."""
    return dest.with_name(dest.name + ".source.json")


def forget_other_source(dest: Path, url: str, force: bool = False) -> None:
    """Drop a partial or complete download that came from another URL (or on --force),
    so that bytes of two different files are never glued together."""
    part = dest.with_name(dest.name + ".part")
    source = _source_file(dest)
    recorded = _read_json(source).get("url")
    if force or (recorded is not None and recorded != url):
        for stale in (part, dest, source):
            stale.unlink(missing_ok=True)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of `bytes a-b/total`; None where the server did not say."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _progress(total: int | None, initial: int, label: str):
    """A byte progress bar on stderr; silent when stderr is not a terminal (logs, CI)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label, disable=None, leave=False)


def _open(url: str, offset: int, validator: str | None):
    """GET `url`, asking for the bytes from `offset` on when resuming."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        if validator:  # the server answers 200 (whole file) if the file changed meanwhile
            request.add_header("If-Range", validator)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return err  # range not satisfiable: handled by the caller
        transient = err.code in TRANSIENT_HTTP or err.code >= 500
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}", transient=transient) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        unknown_host = isinstance(reason, socket.gaierror)  # offline or a typo: retrying won't help
        raise FetchError(f"{url}: cannot connect: {reason}", transient=not unknown_host) from None


def download_once(url: str, dest: Path, console=None) -> None:
    """One attempt: fetch into `dest.part`, appending on 206, restarting on 200.

    Leaves a complete `.part` on success (the caller renames it); raises a transient
    FetchError on a dropped connection, keeping the partial file for the next attempt.
    """
    part = dest.with_name(dest.name + ".part")
    source = _source_file(dest)
    offset = part.stat().st_size if part.is_file() else 0
    recorded = _read_json(source)
    etag = recorded.get("etag") or ""
    validator = etag if etag and not etag.startswith("W/") else recorded.get("last_modified")
    response = _open(url, offset, validator)
    with response:
        status = response.status if hasattr(response, "status") else response.code
        if status == 416:
            _, total = _parse_content_range(response.headers.get("Content-Range"))
            if total == offset:
                return  # the partial file was already complete
            part.unlink()  # longer than the file, or the file changed: start over
            return download_once(url, dest, console)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise FetchError(f"{url}: server resumed at byte {start}, not {offset}; "
                                 "restarting from zero", transient=True)
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        else:
            if offset and console is not None:
                console.print(f"{url}: server did not resume the download; starting again from zero")
            offset, total, mode = 0, length, "wb"
        _write_json_atomic(source, {"url": url, "etag": response.headers.get("ETag"),
                                    "last_modified": response.headers.get("Last-Modified"),
                                    "size": total})
        received = _copy_body(response, part, mode, offset, total, url, dest.name)
    if total is not None and received > total:
        part.unlink()
        raise FetchError(f"{url}: server sent {received} bytes, more than the announced {total}; "
                         "discarded the partial download", transient=True)
    if total is not None and received < total:
        raise FetchError(f"{url}: download truncated: got {received} of {total} bytes; "
                         f"partial file kept at {part}, rerun to resume", transient=True)


def _copy_body(response, part: Path, mode: str, offset: int, total: int | None,
               url: str, label: str) -> int:
    """Stream the response into `part`; returns the size of `part` afterwards."""
    received = offset
    with open(part, mode) as out, _progress(total, offset, label) as bar:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:
                out.flush()
                raise FetchError(f"{url}: connection lost after {received} of {total or '?'} bytes "
                                 f"({type(err).__name__}); partial file kept at {part}, rerun to resume",
                                 transient=True) from None
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as err:  # full disk: name the file, keep what was written
                raise FetchError(f"{part}: cannot write the download: {err}") from None
            received += len(chunk)
            bar.update(len(chunk))
    return received


def download(url: str, dest: Path, retries: int = 2, console=None) -> Path:
    """Fetch `url` to `dest`, resuming across attempts (and across runs) from `dest.part`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        if console is not None:
            resume = f" (resuming at {part.stat().st_size:,} bytes)" if part.is_file() else ""
            console.print(f"Downloading {url} -> {dest}{resume}")
        try:
            download_once(url, dest, console)
            break
        except FetchError as err:
            if not err.transient or attempt == retries:
                raise
            delay = RETRY_BACKOFF_S * (attempt + 1)
            if console is not None:
                console.print(f"{err} - retry {attempt + 1} of {retries} in {delay:g} s")
            time.sleep(delay)
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- archives


def open_archive(zip_path: Path) -> zipfile.ZipFile:
    """Open the archive and CRC-check every member before a single byte is unpacked."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise BadArchive(f"{zip_path}: not a valid zip archive ({err})") from None
    try:
        bad_member = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as err:
        archive.close()
        raise BadArchive(f"{zip_path}: corrupt archive ({type(err).__name__}: {err})") from None
    if bad_member is not None:
        archive.close()
        raise BadArchive(f"{zip_path}: corrupt archive: CRC mismatch in {bad_member}")
    return archive


def check_member_name(name: str, zip_path: Path) -> None:
    """Zip-slip guard: refuse the whole archive if a member could land outside the cache."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix) or ".." in posix.split("/"):
        raise BadArchive(f"{zip_path}: unsafe member path {name!r} (absolute or '..'); refusing to unpack")


def member_targets(archive: zipfile.ZipFile, folder: str, zip_path: Path) -> dict[str, str]:
    """Map each file member to its path under the cache root in the official layout.

    The original project unzips the release inside `Global/` (or `Face_Enhancement/`), so the
    official members start with `checkpoints/`; re-packed archives may already start with
    the folder. Both land at `<folder>/checkpoints/...`; anything else (`__MACOSX/`, readme
    files) is not part of the layout and is skipped.
    """
    targets = {}
    for info in archive.infolist():
        check_member_name(info.filename, zip_path)
        if info.is_dir():
            continue
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if parts and parts[0] == folder:
            parts = parts[1:]
        if len(parts) >= 2 and parts[0] == "checkpoints":
            targets[info.filename] = "/".join((folder, *parts))
    if not targets:
        raise BadArchive(f"{zip_path}: no checkpoints/ folder inside; is this the {folder} archive?")
    return targets


def _extract_member(archive: zipfile.ZipFile, name: str, target: Path, zip_path: Path) -> None:
    """Copy one member to `target` ourselves (never zipfile.extract: we chose the path)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(name) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise BadArchive(f"{zip_path}: cannot unpack {name}: {err}") from None
    except OSError as err:  # full disk, permissions: not the archive's fault
        raise FetchError(f"{target}: cannot write while unpacking {zip_path.name}: {err}") from None


def _move_into_place(staged: Path, final: Path) -> None:
    """Atomic per file: a reader sees the old file or the new one, never half of either."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)


def install_archive(zip_path: Path, archive: Archive, cache_dir: Path, wanted: set[str],
                    entries: dict[str, dict], results: dict[str, TagResult]) -> None:
    """Unpack into staging, verify the wanted checkpoints there, move the good ones into place.

    Checkpoints that fail verification are left out (the file already in the cache, if
    any, stays as it was); checkpoints not wanted (already verified) are neither unpacked
    nor replaced. One member at a time, so staging never needs more than one file's space.
    """
    official = {load_manifest(tag).official_file: tag for tag in archive.tags}
    with open_archive(zip_path) as handle:
        targets = member_targets(handle, archive.folder, zip_path)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=cache_dir))
        try:
            for name, rel in targets.items():
                tag = official.get(rel)
                if tag is not None and tag not in wanted:
                    continue
                _extract_member(handle, name, staging / rel, zip_path)
                if tag is None:
                    _move_into_place(staging / rel, cache_dir / rel)  # not a checkpoint we know
                else:
                    _install_checkpoint(staging, cache_dir, rel, tag, zip_path, entries, results)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for tag in sorted(wanted - {official[rel] for rel in targets.values() if rel in official}):
        results[tag] = TagResult(tag, "missing", f"not in {zip_path.name}")


def _install_checkpoint(staging: Path, cache_dir: Path, rel: str, tag: str, zip_path: Path,
                        entries: dict[str, dict], results: dict[str, TagResult]) -> None:
    """Verify one staged checkpoint and move it into place only if it passes."""
    try:
        entry = verify_file(staging / rel, tag, shown_as=f"{rel} (from {zip_path.name})")
    except CheckpointError as err:
        results[tag] = TagResult(tag, "error", str(err))
        return
    final = cache_dir / rel
    _move_into_place(staging / rel, final)
    entries[tag] = {"path": rel, **entry, **_stamp(final)}  # rename keeps the content
    results[tag] = TagResult(tag, "ok", f"downloaded and verified ({zip_path.name})")


def _set_aside(zip_path: Path) -> Path:
    """Move an unusable archive out of the way so the next run downloads it afresh."""
    bad = zip_path.with_name(zip_path.name + ".bad")
    os.replace(zip_path, bad)
    _source_file(zip_path).unlink(missing_ok=True)
    return bad


def fetch_archive(archive: Archive, cache_dir: Path, wanted: set[str], entries: dict[str, dict],
                  results: dict[str, TagResult], retries: int, force: bool, console) -> None:
    """Download (or reuse) one archive and install the wanted checkpoints from it."""
    zip_path = cache_dir / DOWNLOADS_DIR / archive.zip_name
    forget_other_source(zip_path, archive.url, force)
    if zip_path.is_file():
        console.print(f"Using {zip_path}, downloaded by an earlier run")
    else:
        download(archive.url, zip_path, retries=retries, console=console)
    try:
        install_archive(zip_path, archive, cache_dir, wanted, entries, results)
    except BadArchive as err:
        bad = _set_aside(zip_path)
        raise BadArchive(f"{err} [moved to {bad.name}; the next run downloads it again]") from None
    if all(results[tag].status == "ok" for tag in wanted):
        zip_path.unlink(missing_ok=True)  # its content is in place and verified
        _source_file(zip_path).unlink(missing_ok=True)


# --------------------------------------------------------------------------- orchestration


@contextlib.contextmanager
def cache_lock(cache_dir: Path):
    """Two runs on one cache would append to the same .part file: refuse the second."""
    with open(cache_dir / ".fetch.lock", "w") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FetchError(f"{cache_dir}: another fetch-weights run is using this cache") from None
        yield


def _remove_stale_staging(cache_dir: Path) -> None:
    """Staging folders left by a killed run are garbage (we hold the lock, so no one uses them)."""
    for stale in cache_dir.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _error(console, message: str) -> None:
    """One line, never wrapped, so that it can be grepped from logs."""
    console.print(message, style="red", soft_wrap=True, markup=False, highlight=False)


def _reason(detail: str, rel: str) -> str:
    """The message without its leading file name, which the table shows in its own column."""
    head, sep, tail = detail.partition(": ")
    return tail if sep and PurePosixPath(rel).name in head else detail


def print_summary(console, cache_dir: Path, results: dict[str, TagResult]) -> None:
    """Per-tag table: ok / missing / error and why (file paths are in the lines above and
    in verified.json; leaving them out keeps the table readable in an 80-column log)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Checkpoints in {cache_dir}", title_justify="left")
    table.add_column("tag", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for result in results.values():
        rel = load_manifest(result.tag).official_file
        table.add_row(result.tag, Text(result.status, style=STATUS_STYLE[result.status]),
                      Text(_reason(result.detail, rel)))
    console.print(table, soft_wrap=False)


def fetch_weights(cache_dir: Path, global_url: str | None = None, face_url: str | None = None,
                  include_faces: bool = True, *, tags=None, retries: int = 2,
                  force: bool = False) -> int:
    """Make every requested checkpoint present and verified under `cache_dir`.

    Returns 0 when all are, 1 otherwise (each problem is printed as one line, then a table).
    `tags` restricts the work (default: the global tags, plus the face tags with
    `include_faces`); `force` ignores verified.json and any earlier (partial) download.
    """
    from rich.console import Console

    # plain text everywhere (paths may contain [brackets]); lines are never wrapped
    out = Console(markup=False, highlight=False, soft_wrap=True)
    err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
    cache_dir = Path(cache_dir).expanduser()
    chosen = select_tags(tags, include_faces)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with cache_lock(cache_dir):
            results = _fetch_locked(cache_dir, chosen, global_url, face_url, retries, force, out, err)
    except (FetchError, OSError) as failure:
        _error(err, str(failure))
        return 1
    print_summary(out, cache_dir, results)
    return 0 if all(result.status == "ok" for result in results.values()) else 1


def _fetch_locked(cache_dir: Path, tags: tuple[str, ...], global_url, face_url, retries: int,
                  force: bool, out, err) -> dict[str, TagResult]:
    """The whole run, under the cache lock; returns the per-tag results."""
    _remove_stale_staging(cache_dir)
    entries = load_verified(cache_dir)
    if force:  # re-verify what this run covers; keep what other runs recorded
        for tag in tags:
            entries.pop(tag, None)
    results = {tag: check_installed(cache_dir, tag, entries) for tag in tags}
    for result in results.values():
        if result.status == "error":
            _error(err, result.detail)
    todo = [a for a in plan_archives(global_url, face_url, tags)
            if any(results[tag].status != "ok" for tag in a.tags)]
    if not todo:
        out.print(f"All {len(tags)} checkpoints already present and verified in {cache_dir}; "
                  "nothing to download.")
    for archive in todo:
        wanted = {tag for tag in archive.tags if results[tag].status != "ok"}
        known = {tag: results[tag].detail for tag in wanted}
        try:
            fetch_archive(archive, cache_dir, wanted, entries, results, retries, force, out)
        except FetchError as failure:
            _error(err, str(failure))
            for tag in wanted:
                if results[tag].status == "missing":
                    results[tag].detail = f"{archive.zip_name} could not be fetched (see above)"
        for tag in sorted(wanted):  # checkpoints of the archive that failed verification
            if results[tag].status == "error" and results[tag].detail != known[tag]:
                _error(err, results[tag].detail)
    save_verified(cache_dir, entries)
    return results
