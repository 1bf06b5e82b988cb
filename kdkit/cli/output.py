"""What the CLI prints: results on stdout (``out``), progress and errors on stderr (``err``), metric tables."""

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, on one line (the message is not read as rich markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def is_percent(key: str) -> bool:
    """Whether metric ``key`` (``accuracy``, ``mnli_m/f1``, ``mse`` ...) is shown as a percentage."""
    return key.split("/")[-1] != "mse"


def format_metric(key: str, value: float) -> str:
    """A percentage with two decimals, or an MSE with four."""
    return f"{100 * value:.2f}" if is_percent(key) else f"{value:.4f}"


def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """One table row per metric."""
    table = Table(title=title, show_header=True, min_width=min(len(title) + 2, 80))  # the title on one line
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    for key, value in metrics.items():
        table.add_row(key, format_metric(key, value))
    out.print(table)
