"""What ``kdkit plugins`` lists: every loaded plugin's components, each with its options (type, default and
description), as rows for the terminal and for ``--json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kdkit.config import type_name
from kdkit.plugins.manager import ComponentKind, PluginInfo, PluginManager


@dataclass(frozen=True)
class OptionRow:
    """One option of a component, as ``kdkit plugins`` lists it."""

    type: str
    default: Any
    description: str


@dataclass(frozen=True)
class ComponentRow:
    """One row of ``kdkit plugins``: a component of a plugin, or ``-`` for a plugin that provides none."""

    plugin: str
    source: str
    kind: ComponentKind | None  #: None: the plugin provides no component (listed as "-")
    name: str
    description: str | None = None
    options: dict[str, OptionRow] = field(default_factory=dict)
    differentiable: bool | None = None  #: providers only
    presets: list[str] | None = None  #: losses only

    def to_dict(self) -> dict[str, Any]:
        """The row as ``kdkit plugins --json`` prints it (fields that do not apply are left out)."""
        kind = self.kind.label if self.kind is not None else "-"
        row: dict[str, Any] = {"plugin": self.plugin, "source": self.source, "kind": kind, "name": self.name}
        if self.description is not None:
            row["description"] = self.description
        row["options"] = {name: vars(option) for name, option in self.options.items()}
        if self.differentiable is not None:
            row["differentiable"] = self.differentiable
        if self.presets is not None:
            row["presets"] = self.presets
        return row


def _component_row(info: PluginInfo, component: Any, kind: ComponentKind) -> ComponentRow:
    is_provider = kind is ComponentKind.PROVIDER
    return ComponentRow(
        plugin=info.name,
        source=info.source,
        kind=kind,
        name=component.name,
        description=component.description,
        options={
            name: OptionRow(
                type=type_name(option.annotation),
                default=option.get_default(call_default_factory=True),
                description=option.description or "",
            )
            for name, option in component.Options.model_fields.items()
        },
        differentiable=bool(component.differentiable) if is_provider else None,
        presets=list(component.presets) if kind is ComponentKind.LOSS else None,
    )


def component_rows(manager: PluginManager) -> list[ComponentRow]:
    """Every loaded plugin's components (losses, then providers), in registration order."""
    rows: list[ComponentRow] = []
    for info in manager.plugins():
        for kind in ComponentKind:
            rows += [_component_row(info, component, kind) for component in info.components[kind]]
        if not any(info.components.values()):
            rows.append(ComponentRow(plugin=info.name, source=info.source, kind=None, name="-"))
    return rows
