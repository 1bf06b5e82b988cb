"""``kdkit plugins``: the installed plugins and their components (:func:`kdkit.plugins.listing.component_rows`)."""

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from kdkit.cli.base import command, handle_errors, plugin_manager
from kdkit.cli.output import out

if TYPE_CHECKING:
    from kdkit.plugins.listing import ComponentRow


def _component_tree(rows: list["ComponentRow"]) -> Tree:
    """Plugins, their components and each component's options as a tree: every line is short, so it reads at
    80 columns without a word split across table cells."""
    tree = Tree("kdkit plugins", guide_style="dim")
    branches: dict[tuple[str, str], Tree] = {}
    for row in rows:
        key = (row.plugin, row.source)
        if key not in branches:
            branches[key] = tree.add(Text.assemble((row.plugin, "bold"), f"  ({row.source})"))
        if row.kind is None:
            continue
        extra = ["differentiable"] if row.differentiable else []
        if row.presets:
            extra.append("presets: " + ", ".join(row.presets))
        label = Text.assemble(f"{row.kind.label} ", (row.name, "bold cyan"), f"  ({'; '.join(extra)})" if extra else "")
        component = branches[key].add(label)
        for name, option in row.options.items():
            component.add(Text(f"{name}: {option.type} = {option.default!r}"))
    return tree


def _print_listing(rows: list["ComponentRow"]) -> None:
    out.print(_component_tree(rows))


@command()
@handle_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List installed plugins, where each came from, what it provides, and failures."""
    from kdkit.plugins.listing import component_rows
    from kdkit.plugins.manager import ENV_DISABLE_AUTOLOAD, ENV_DISABLE_PLUGINS

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
    _print_listing(rows)
    for failure in failures:
        out.print(f"[red]failed:[/] {failure['plugin']} ({failure['source']}): {failure['error']}", soft_wrap=True)
    if disabled:
        out.print(f"disabled: {', '.join(disabled)} (--disable-plugin / {ENV_DISABLE_PLUGINS})")
    if not manager.autoload:
        out.print(
            f"entry-point autoloading is disabled ({ENV_DISABLE_AUTOLOAD}); "
            "only plugins named with --enable-plugin or KDKIT_PLUGINS are loaded"
        )
