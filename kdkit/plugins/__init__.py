"""The plugin host: discovering plugins, isolating broken ones, and building their components.

- :mod:`~kdkit.plugins.manager`: :class:`~kdkit.plugins.manager.PluginManager` (built-ins, ``kdkit`` entry
  points, enabling and disabling, the component registries);
- :mod:`~kdkit.plugins.builtin`: the built-in plugin (``ce``, ``kd``, ``hidden``, ``attention``);
- :mod:`~kdkit.plugins.isolation`: a plugin's import or hook run without letting it stop kdkit;
- :mod:`~kdkit.plugins.options`: components' options validated, providers built with them;
- :mod:`~kdkit.plugins.listing`: what ``kdkit plugins`` lists.

The hook specifications are :mod:`kdkit.hookspecs`; what a plugin imports is :mod:`kdkit.plugin_api`.
"""
