"""Verified cache entries: built aside, committed with a manifest, checked before every reuse.

An entry ``<key>`` of a cache folder is a ``datasets`` Arrow file ``<key>.arrow`` plus its manifest
``<key>.json`` (:class:`~kdkit.records.manifests.CacheManifest`: row count, columns, size and SHA-256 of the file).

- **Build**: in a fresh folder ``<key>.build-<random>/`` locked by its builder
  (:class:`~kdkit.records.locking.RunLock`); then the file and the manifest are renamed into place, the manifest
  last. A reader never sees half a file.
- **Reuse**: only when the manifest is valid and the file has its size, checksum, rows and columns. Anything
  else (a truncated, emptied or garbage file, a missing or edited manifest) is reported in one line and the
  entry is rebuilt.
- **Clean-up**: build folders whose builder is gone (a killed build) are removed the next time the cache is used.
- **A full disk** while an entry is built is one line; the build folder is removed, other entries are untouched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from datasets import Dataset

from kdkit.errors import KdkitError, disk_full_error, is_disk_full
from kdkit.records.home import kdkit_home
from kdkit.records.locking import LOCK_SUFFIX, RunLock
from kdkit.records.manifests import CacheManifest, check_files, describe_file, read_json, write_json

BUILD_MARK = ".build-"
Say = Callable[[str], None]


def entry_paths(directory: Path, key: str) -> tuple[Path, Path]:
    """(``<key>.arrow``, ``<key>.json``) under ``directory``."""
    return directory / f"{key}.arrow", directory / f"{key}.json"


def clean_stray_builds(directory: Path) -> list[Path]:
    """Remove build folders (and their lock files) that no live process holds, left by killed builds;
    returns the folders removed."""
    removed = []
    folders = {p.with_name(p.name.removesuffix(LOCK_SUFFIX)) for p in directory.glob(f"*{BUILD_MARK}*")}
    for folder in sorted(folders):
        lock = RunLock(folder)
        try:
            lock.acquire()
        except KdkitError:
            continue  # another process is building it right now
        try:
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            lock.release()
    return removed


def load_verified(directory: Path, key: str, *, rows: int, columns: list[str], say: Say) -> Dataset | None:
    """The entry ``key`` if it exists and passes every check (``rows`` rows, at least ``columns``); else
    ``None``, with one line said if it was there but bad (and it is removed)."""
    clean_stray_builds(directory)
    data, manifest_path = entry_paths(directory, key)
    if not data.exists() and not manifest_path.exists():
        return None
    problem = _problem(directory, key, rows=rows, columns=columns)
    if problem is None:
        try:
            return Dataset.from_file(str(data))
        except Exception as exc:  # pyarrow's errors for a file that is not Arrow
            problem = f"unreadable ({type(exc).__name__})"
    say(f"the cache entry {data} is damaged ({problem}); rebuilding it")
    data.unlink(missing_ok=True)
    manifest_path.unlink(missing_ok=True)
    return None


def _problem(directory: Path, key: str, *, rows: int, columns: list[str]) -> str | None:
    data, manifest_path = entry_paths(directory, key)
    if not manifest_path.is_file():
        return f"{manifest_path.name} is missing"
    try:
        manifest = read_json(manifest_path, CacheManifest, fix="")
    except KdkitError as exc:
        return exc.problem.replace(str(manifest_path), manifest_path.name)
    problem = check_files(directory, {data.name: manifest.file})
    if problem is not None:
        return problem.message
    if manifest.key != key or manifest.rows != rows or not set(columns) <= set(manifest.columns):
        return "its manifest describes other data"
    return None


def build_entry(directory: Path, key: str, build: Callable[[str], Dataset]) -> Dataset:
    """Build the entry with ``build(path)`` (which must write the Arrow file ``path``), commit it, and return
    the committed dataset."""
    directory.mkdir(parents=True, exist_ok=True)
    folder = directory / f"{key}{BUILD_MARK}{uuid.uuid4().hex[:8]}"
    lock = RunLock(folder)
    lock.acquire()
    data, manifest_path = entry_paths(directory, key)
    try:
        folder.mkdir()
        built_path = folder / "data.arrow"
        built = build(str(built_path))
        manifest = CacheManifest(key=key, rows=len(built), columns=built.column_names, file=describe_file(built_path))
        write_json(folder / "manifest.json", manifest)
        os.replace(built_path, data)
        os.replace(folder / "manifest.json", manifest_path)
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full_error(
                exc,
                f"the cache entry {data}",
                f"free some space in KDKIT_HOME ({kdkit_home()}), or pass --no-teacher-cache; the other entries "
                "are untouched",
            ) from None
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.release()
    return Dataset.from_file(str(data))
