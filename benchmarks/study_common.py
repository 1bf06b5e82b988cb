"""What the GLUE studies share (benchmarks/glue_study.py, glue_study_intermediate.py, paper_study.py): the metric
each task is reported by, mean ± std, the paired verdict rule, and report sections between markers.

Torch-free: the report steps import nothing heavy.
"""

from __future__ import annotations

import statistics
from pathlib import Path

#: how the paper reports each task (Table 1)
REPORTED = {"cola": "mcc", "mrpc": "f1", "stsb": "spearman", "sst2": "accuracy", "agnews": "accuracy"}


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); NaN for no values, std 0 for one."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` times ``scale`` ("–" when empty; the mean alone for one value)."""
    if not values:
        return "–"
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def verdict(diffs: list[float], spread: float, method: str = "AD-KD") -> str:
    """Plain words for a mean paired difference against the seed spread (std of the baseline's runs).

    A difference counts only when it is larger than both twice its standard error and the seed spread (no
    difference at all, with no spread, is no difference)."""
    if len(diffs) < 2:
        return "too few seeds to say"
    mean, std = mean_std(diffs)
    sem = std / len(diffs) ** 0.5
    if abs(mean) <= 2 * sem or abs(mean) <= spread:
        return "no clear difference (within the seed spread)"
    return f"{method} better" if mean > 0 else f"{method} worse"


def replace_section(report: Path, begin: str, end: str, lines: list[str], *, after_title: bool = False) -> None:
    """Put ``lines`` (which start with ``begin`` and end with ``end``) in place of the block between those markers
    of ``report``; without markers, append it (or, with ``after_title``, insert it after the first heading's
    paragraph). The rest of the file stays as it is."""
    text = report.read_text() if report.is_file() else ""
    block = "\n".join(lines)
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + block + rest.split(end, 1)[1]
    elif after_title and text.startswith("# "):
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{block}\n{rest}"
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)


def kept_section(path: Path, begin: str, end: str) -> str:
    """The block of ``path`` from ``begin`` to ``end`` (written by another script), after a blank line; or ""."""
    text = path.read_text() if path.is_file() else ""
    if begin not in text or end not in text:
        return ""
    return "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
