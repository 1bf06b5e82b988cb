"""The plugin host: discovers plugins, isolates broken ones, and collects their components.

Discovery, in order:

1. the built-in plugin (:mod:`kdkit.plugins.builtin`), registered directly;
2. every entry point of the group ``kdkit`` (``[project.entry-points.kdkit] NAME = "module"``), unless
   ``KDKIT_DISABLE_PLUGIN_AUTOLOAD`` is set;
3. the names in ``KDKIT_PLUGINS`` (comma-separated entry-point names or importable modules), loaded even
   when autoloading is off; the CLI's ``--enable-plugin NAME`` does the same.

``KDKIT_DISABLE_PLUGINS=a,b`` and the CLI's ``--disable-plugin NAME`` block plugins by name (like pytest's ``-p
no:NAME``). A plugin that fails to import (an exception, ``sys.exit()``, ``os._exit()`` or a ``KeyboardInterrupt``
of its own at import: a real Ctrl-C still interrupts), implements an unknown hook or a hook with the wrong
signature, raises from a hook, or returns something that is not a component class is recorded in
:attr:`PluginManager.failures` and left out; the others keep working. A module named in ``KDKIT_PLUGINS`` that does
not exist is reported as such, one that exists but fails to import with its error. (``os._exit`` raises
:class:`~kdkit.plugins.isolation.PluginExit` while plugin code runs; the CLI imports plugins only in the commands
that use them.)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from kdkit import hookspecs
from kdkit.attribution.base import AttributionProvider
from kdkit.config import LOSS_SEPARATOR, split_loss_names
from kdkit.data.augmentation import Augmenter
from kdkit.errors import PluginError
from kdkit.losses.base import DistillationLoss
from kdkit.losses.composite import composite_class
from kdkit.plugins import builtin
from kdkit.plugins.isolation import PluginInterrupt, call_hook, describe, guarded, import_failure, users_interrupt

ENTRY_POINT_GROUP = "kdkit"
ENV_DISABLE_AUTOLOAD = "KDKIT_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "KDKIT_PLUGINS"
ENV_DISABLE_PLUGINS = "KDKIT_DISABLE_PLUGINS"
BUILTIN_NAME = "builtin"


@dataclass
class PluginFailure:
    """A plugin that could not be used, with the reason."""

    name: str
    source: str
    error: str


class ComponentKind(Enum):
    """What a plugin contributes, each kind through its own hook and as subclasses of its own base class."""

    LOSS = ("loss", "kdkit_losses", DistillationLoss)
    PROVIDER = ("attribution provider", "kdkit_attribution_providers", AttributionProvider)
    AUGMENTER = ("augmenter", "kdkit_augmenters", Augmenter)

    def __init__(self, label: str, hook: str, base: type) -> None:
        #: what ``kdkit plugins`` calls it
        self.label = label
        #: the hook spec (:mod:`kdkit.hookspecs`) that contributes it
        self.hook = hook
        #: the class every component of this kind subclasses
        self.base = base


@dataclass
class PluginInfo:
    """A loaded plugin: its name, where it came from, and the components it provides, by kind."""

    name: str
    source: str
    components: dict[ComponentKind, list[Any]] = field(default_factory=lambda: {kind: [] for kind in ComponentKind})

    @property
    def losses(self) -> list[type[DistillationLoss]]:
        return self.components[ComponentKind.LOSS]

    @property
    def providers(self) -> list[type[AttributionProvider]]:
        return self.components[ComponentKind.PROVIDER]

    @property
    def augmenters(self) -> list[type[Augmenter[Any]]]:
        return self.components[ComponentKind.AUGMENTER]


#: what a broken plugin may raise while it is imported or asked for its components (SystemExit: it called
#: sys.exit; KeyboardInterrupt: it raised one itself, which :func:`guarded` tells from a real Ctrl-C)
_PLUGIN_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


def _split_names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class PluginManager:
    """kdkit's plugin manager: a :class:`pluggy.PluginManager` plus discovery and component registries.

    Args:
        autoload: load the ``kdkit`` entry points (default: unless ``KDKIT_DISABLE_PLUGIN_AUTOLOAD``).
        enable: entry-point names or module names to load even without autoload (adds ``KDKIT_PLUGINS``).
        disable: plugin names to block (adds ``KDKIT_DISABLE_PLUGINS``).
        extra_plugins: ``{name: module_or_object}`` registered directly (tests, notebooks).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        enable: Iterable[str] = (),
        disable: Iterable[str] = (),
        extra_plugins: dict[str, Any] | None = None,
    ) -> None:
        self.hooks = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.hooks.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.sources: dict[str, str] = {}
        self.disabled = set(disable) | set(_split_names(os.environ.get(ENV_DISABLE_PLUGINS)))
        for name in self.disabled:
            self.hooks.set_blocked(name)

        self._register(builtin, BUILTIN_NAME, "built-in")
        if autoload is None:
            autoload = not _env_flag(ENV_DISABLE_AUTOLOAD)
        #: whether every ``kdkit`` entry point was loaded (else only the enabled ones)
        self.autoload = autoload
        wanted = list(enable) + _split_names(os.environ.get(ENV_PLUGINS))
        self._load_entry_points(autoload=autoload, wanted=wanted)
        for name, plugin in (extra_plugins or {}).items():
            self._register(plugin, name, "registered in-process")
        self._collect()

    # -- discovery -------------------------------------------------------------------------------

    def _load_entry_points(self, *, autoload: bool, wanted: list[str]) -> None:
        entry_points = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        names = list(entry_points) if autoload else []
        names += [name for name in wanted if name in entry_points and name not in names]
        for name in names:
            if name in self.disabled or self.hooks.has_plugin(name):
                continue
            ep = entry_points[name]
            source = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else f"entry point {ep.value}"
            with guarded() as seen:
                try:
                    plugin = ep.load()
                except _PLUGIN_ERRORS as exc:  # any import-time error of a third-party plugin, sys.exit() included
                    if users_interrupt(exc, seen):
                        raise
                    self.failures.append(PluginFailure(name, source, f"failed to import {ep.value}: {describe(exc)}"))
                    continue
            self._register(plugin, name, source)
        for name in wanted:
            if name in entry_points or name in self.disabled or self.hooks.has_plugin(name):
                continue
            with guarded() as seen:
                try:
                    module: ModuleType = importlib.import_module(name)
                except _PLUGIN_ERRORS as exc:
                    if users_interrupt(exc, seen):
                        raise
                    self.failures.append(PluginFailure(name, "KDKIT_PLUGINS", import_failure(name, exc)))
                    continue
            self._register(module, name, f"module {name}")

    def _register(self, plugin: Any, name: str, source: str) -> None:
        if name in self.disabled:
            return
        try:
            self.hooks.register(plugin, name=name)
        except Exception as exc:  # pluggy.PluginValidationError, duplicate names
            self.failures.append(PluginFailure(name, source, f"invalid plugin: {exc}"))
            return
        unknown = [caller.name for caller in self.hooks.get_hookcallers(plugin) or [] if not caller.has_spec()]
        if unknown:
            self.hooks.unregister(plugin)
            self.failures.append(PluginFailure(name, source, f"implements unknown hook(s) {', '.join(unknown)}"))
            return
        self.sources[name] = source

    # -- components ------------------------------------------------------------------------------

    def _collect(self) -> None:
        self.infos: dict[str, PluginInfo] = {name: PluginInfo(name, source) for name, source in self.sources.items()}
        #: the components of each kind by name
        self.registries: dict[ComponentKind, dict[str, Any]] = {kind: {} for kind in ComponentKind}
        owners: dict[str, str] = {}
        broken: set[str] = set()
        for kind in ComponentKind:
            for impl in getattr(self.hooks.hook, kind.hook).get_hookimpls():  # registration order
                plugin_name = impl.plugin_name
                if plugin_name in broken:
                    continue
                try:
                    components = self._check_components(call_hook(impl.function), kind.base)
                except (Exception, SystemExit) as exc:
                    reason = describe(exc) if isinstance(exc, (SystemExit, PluginInterrupt)) else str(exc)
                    self._fail(plugin_name, f"{kind.hook}() failed: {reason}")
                    broken.add(plugin_name)
                    continue
                for component in components:
                    if component.name in owners:
                        owner = owners[component.name]
                        self._fail(
                            plugin_name, f"component name '{component.name}' is already provided by plugin '{owner}'"
                        )
                        continue
                    owners[component.name] = plugin_name
                    self.registries[kind][component.name] = component
                    self.infos[plugin_name].components[kind].append(component)
        for name in broken:
            self._drop(name)

    @property
    def losses(self) -> dict[str, type[DistillationLoss]]:
        """The loss classes by name."""
        return self.registries[ComponentKind.LOSS]

    @property
    def providers(self) -> dict[str, type[AttributionProvider]]:
        """The attribution provider classes by name."""
        return self.registries[ComponentKind.PROVIDER]

    @property
    def augmenters(self) -> dict[str, type[Augmenter[Any]]]:
        """The augmenter classes by name."""
        return self.registries[ComponentKind.AUGMENTER]

    @staticmethod
    def _check_components(returned: Any, base: type) -> list[Any]:
        if returned is None:
            return []
        if not isinstance(returned, (list, tuple)):
            raise TypeError(f"expected a list of {base.__name__} subclasses, got {type(returned).__name__}")
        for item in returned:
            if not (isinstance(item, type) and issubclass(item, base)):
                raise TypeError(f"{item!r} is not a {base.__name__} subclass")
            if not isinstance(getattr(item, "name", None), str) or not getattr(item, "name", ""):
                raise TypeError(f"{item.__name__} has no 'name'")
        return list(returned)

    def _fail(self, plugin_name: str, error: str) -> None:
        self.failures.append(PluginFailure(plugin_name, self.sources.get(plugin_name, "?"), error))

    def _drop(self, plugin_name: str) -> None:
        info = self.infos.pop(plugin_name, None)
        if info is None:
            return
        for kind, components in info.components.items():
            for component in components:
                self.registries[kind].pop(component.name, None)

    # -- lookups ---------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Loaded plugins in registration order."""
        return list(self.infos.values())

    def loss(self, name: str) -> type[DistillationLoss]:
        """The loss class ``name``, or a :class:`PluginError` naming the known ones. ``a+b`` names the
        composite of the losses ``a`` and ``b`` (:mod:`kdkit.losses.composite`)."""
        if LOSS_SEPARATOR in name:
            return composite_class(tuple(self.loss(part) for part in split_loss_names(name)))
        try:
            return self.losses[name]
        except KeyError:
            raise PluginError(
                f"unknown plugin loss '{name}'" + self._failure_hint(name),
                f"use one of {', '.join(sorted(self.losses))} (see 'kdkit plugins')",
            ) from None

    def provider(self, name: str) -> type[AttributionProvider]:
        """The attribution provider class ``name``, or a :class:`PluginError` naming the known ones."""
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(sorted(self.providers)) or "none installed"
            raise PluginError(
                f"unknown attribution provider '{name}'" + self._failure_hint(name),
                f"use one of: {known} (see 'kdkit plugins')",
            ) from None

    def augmenter(self, name: str) -> type[Augmenter[Any]]:
        """The augmenter class ``name``, or a :class:`PluginError` naming the known ones."""
        try:
            return self.augmenters[name]
        except KeyError:
            known = ", ".join(sorted(self.augmenters)) or "none installed"
            raise PluginError(
                f"unknown augmenter '{name}'" + self._failure_hint(name),
                f"use one of: {known} (see 'kdkit plugins')",
            ) from None

    def component_options(self, name: str) -> type[Any] | None:
        """The options model of the loss, provider or augmenter ``name`` (None if unknown)."""
        component: Any = self.losses.get(name) or self.providers.get(name) or self.augmenters.get(name)
        return None if component is None else component.Options

    def _failure_hint(self, name: str) -> str:
        failed = [f.name for f in self.failures]
        if name in self.disabled:
            return f" (plugin '{name}' is disabled)"
        return f" (plugins that failed to load: {', '.join(failed)})" if failed else ""


_default: PluginManager | None = None


def get_plugin_manager(**kwargs: Any) -> PluginManager:
    """The process-wide plugin manager, created on first use (kwargs only apply then)."""
    global _default
    if _default is None:
        _default = PluginManager(**kwargs)
    return _default


def set_plugin_manager(manager: PluginManager | None) -> None:
    """Replace (or with None, reset) the process-wide plugin manager."""
    global _default
    _default = manager
