"""``kdkit plugins``: the installed plugins and their components (:func:`kdkit.plugins.component_rows`)."""

import json
from typing import Annotated

import typer
from rich.table import Table

from kdkit.cli.base import command, handle_errors, plugin_manager
from kdkit.cli.output import out


@command()
@handle_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List installed plugins, where each came from, what it provides, and failures."""
    from kdkit.plugins import ENV_DISABLE_AUTOLOAD, ENV_DISABLE_PLUGINS, component_rows

    manager = plugin_manager()
    rows = component_rows(manager)
    failures = [{"plugin": f.name, "source": f.source, "error": f.error} for f in manager.failures]
    disabled = sorted(manager.disabled)
    if as_json:
        listing = {
            "components": [row.to_dict() for row in rows],
            "failures": failures,
            "disabled": disabled,
            "autoload": manager.autoload,
        }
        out.print_json(json.dumps(listing, default=str))
        return
    table = Table(title="kdkit plugins", show_lines=True)
    for column in ("plugin", "source", "kind", "name", "options (type, default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        options = "\n".join(f"{k}: {v.type} = {v.default!r}" for k, v in row.options.items()) or "-"
        extra = ["differentiable"] if row.differentiable else []
        if row.presets:
            extra.append("presets: " + ", ".join(row.presets))
        name = row.name + (f"\n({'; '.join(extra)})" if extra else "")
        table.add_row(row.plugin, row.source, row.kind, name, options)
    out.print(table)
    for failure in failures:
        out.print(f"[red]failed:[/] {failure['plugin']} ({failure['source']}): {failure['error']}", soft_wrap=True)
    if disabled:
        out.print(f"disabled: {', '.join(disabled)} (--disable-plugin / {ENV_DISABLE_PLUGINS})")
    if not manager.autoload:
        out.print(
            f"entry-point autoloading is disabled ({ENV_DISABLE_AUTOLOAD}); "
            "only plugins named with --enable-plugin or KDKIT_PLUGINS are loaded"
        )
