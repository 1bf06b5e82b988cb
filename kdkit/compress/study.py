"""The Optuna study behind ``kdkit compress``: where it is stored, and that it belongs to this task and teacher.

By default the study is a SQLite file in the output folder (``study.db``), so that running the same command
again continues it; ``--storage URL`` takes any storage Optuna opens from a URL (``sqlite:///``,
``postgresql://``, ``mysql://``) or ``journal:PATH`` (Optuna's journal file), so that several processes or
machines share one study. The study records what it was made for (``kdkit`` user attribute: task, teacher
weights, data) and refuses to continue for another; its objectives are score (maximised), p95 latency and, with
a size budget, size (minimised), and the budgets are Optuna constraints (``Trial.set_constraint``), which the
sampler steers by.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from kdkit.errors import ConfigError

STUDY_FILE = "study.db"
IDENTITY_ATTR = "kdkit"


def storage_url(output: Path, storage: str | None) -> str:
    """``storage`` as given, or the SQLite file in ``output``."""
    return storage or f"sqlite:///{(output / STUDY_FILE).absolute()}"


def _storage(url: str) -> Any:
    """An Optuna storage for ``url``; one line when it cannot be opened."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    try:
        if url.startswith("journal:"):
            return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(
            f"cannot open the study storage {url} ({first})",
            "give --storage a URL Optuna opens (sqlite:///FILE, postgresql://..., journal:FILE) that is reachable",
        ) from None


def _create(url: str, name: str, directions: list[Literal["minimize", "maximize"]]) -> Any:
    import optuna

    storage = _storage(url)
    try:
        return optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(
            f"cannot open study '{name}' in {url} ({first})", "check --storage and --study-name"
        ) from None


def _opened(url: str, name: str, directions: list[Literal["minimize", "maximize"]], identity: dict[str, Any]) -> Any:
    """The study, its identity checked (or recorded). Processes opening a new study at once collide while the
    storage creates its tables: for a local SQLite file they take turns (a lock beside it); any storage is tried
    three times before the one-line error."""
    from kdkit.records.locking import RunLock

    database = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    lock = RunLock(database) if database is not None and database.parent.is_dir() else None
    if lock is not None:
        lock.acquire(wait=True)
    try:
        for attempt in range(3):
            try:
                study = _create(url, name, directions)
                break
            except ConfigError:
                if attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
        _check_identity(study, url, identity)
        return study
    finally:
        if lock is not None:
            lock.release()


def open_study(url: str, name: str, identity: dict[str, Any], *, with_size: bool, seed: int | None) -> Any:
    """The study ``name`` in ``url`` (created, or loaded and checked against ``identity`` and its objectives),
    with a constrained multi-objective TPE sampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    directions: list[Literal["minimize", "maximize"]] = ["maximize", "minimize"]
    if with_size:
        directions.append("minimize")
    study = _opened(url, name, directions, identity)
    # seeded by the trials already there: a rerun with the same --sampler-seed must not draw its first trials again
    offset = len(study.get_trials(deepcopy=False)) if seed is not None else 0
    study.sampler = optuna.samplers.TPESampler(seed=None if seed is None else seed + offset, n_startup_trials=6)
    made = [d.name.lower() for d in study.directions]
    if made != directions:
        had = "with" if len(made) == 3 else "without"
        raise ConfigError(
            f"study '{name}' in {url} was made {had} a size budget",
            "give the same budgets as its first run, or a new --output / --study-name",
        )
    return study


def _check_identity(study: Any, url: str, identity: dict[str, Any]) -> None:
    """Record ``identity`` on a new study; refuse a study made for another task, teacher or data."""
    recorded = study.user_attrs.get(IDENTITY_ATTR)
    if recorded is None:
        study.set_user_attr(IDENTITY_ATTR, identity)
        return
    different = [key for key in identity if recorded.get(key) != identity[key]]
    if different:
        key = different[0]
        raise ConfigError(
            f"study '{study.study_name}' in {url} was made for {key} {recorded.get(key)!r}, not {identity[key]!r}",
            "use a new --output (or --study-name) for another task, teacher or data",
        )
