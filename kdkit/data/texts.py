"""Text kdkit is given: files (config files, custom data) must be UTF-8, said in one line if not; YAML whose
aliases expand beyond reason is refused (:func:`load_yaml`); texts given on the command line or to the API
(``kdkit predict``, ``kdkit explain``) must be valid Unicode (:func:`check_text_encoding`).

This module imports nothing heavier than PyYAML (``kdkit predict`` runs without torch).
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kdkit.errors import ConfigError, DataError, KdkitError

_CHUNK = 1 << 20


def _guess(head: bytes) -> tuple[str, str]:
    """(a likely encoding, its iconv name) from the first bytes of a file that is not UTF-8."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or head[:200].count(b"\0") > 10:
        return "UTF-16", "UTF-16"
    return "Latin-1/Windows-1252 or another 8-bit encoding", "WINDOWS-1252"


def check_utf8(path: Path, *, error: type[KdkitError] = DataError) -> None:
    """Raise ``error`` naming ``path``, the first bad byte and a likely encoding unless the file is UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, head, offset = 1, b"", 0
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            head = head or chunk[:4096]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                seen = bytes(exc.object)  # what the decoder held: a few bytes of the last chunk, then this one
                line += seen[: exc.start].count(b"\n")
                position = offset - (len(seen) - len(chunk)) + exc.start + 1
                encoding, iconv = _guess(head)
                raise error(
                    f"{path} is not UTF-8 text (byte 0x{seen[exc.start]:02x} at line {line}, byte {position}; "
                    f"it looks like {encoding})",
                    f"save it as UTF-8, e.g. iconv -f {iconv} -t UTF-8 {path.name} > utf8-{path.name}",
                ) from None
            if not chunk:
                return
            line += chunk.count(b"\n")
            offset += len(chunk)


def read_utf8(path: Path, *, error: type[KdkitError] = DataError) -> str:
    """The text of a UTF-8 file (see :func:`check_utf8` for the error)."""
    check_utf8(path, error=error)
    return path.read_text(encoding="utf-8")


#: the most values (mappings, lists and scalars, with every alias expanded) a YAML config or --set value may hold
MAX_YAML_NODES = 100_000


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load``, refusing a document whose anchors and aliases expand to more than
    :data:`MAX_YAML_NODES` values (a "billion laughs" document: kilobytes that expand to gigabytes)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, MAX_YAML_NODES)
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{where} expands to more than {MAX_YAML_NODES:,} values (its YAML aliases repeat anchored "
                "parts over and over)",
                "write the values out, or use fewer aliases (*name)",
            )
        _check_unique_keys(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_unique_keys(root: yaml.Node, where: str) -> None:
    """A key given twice in one mapping (two ``training:`` sections, an option written twice) is an error naming
    the key and both lines: YAML would keep the last one and drop the first without a word."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen or not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
            continue
        lines: dict[str, int] = {}
        for key, value in node.value:
            pending.extend((key, value))
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in lines:
                raise ConfigError(
                    f"{where}: the key '{key.value}' is given twice (lines {lines[key.value]} and {line}); YAML "
                    "would keep only the last one",
                    "keep one of them (merge the two into one)",
                )
            lines[key.value] = line


def _expanded_size(node: yaml.Node, sizes: dict[int, int], limit: int) -> int:
    """How many values ``node`` stands for once every alias is expanded (an alias is the same node object
    again: each node is sized once, so this takes time linear in the document, not in its expansion)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = limit + 1  # a node that holds itself (a recursive alias) expands without end
    total = 1
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    for child in children:
        total += _expanded_size(child, sizes, limit)
        if total > limit:
            break
    sizes[id(node)] = total
    return total


# -- texts given on the command line or to the API -------------------------------------------------------


def check_text_encoding(texts: Sequence[Any], pairs: Sequence[Any] | None = None) -> None:
    """Every text must be valid Unicode: a command-line argument that was not UTF-8 reaches Python with its bad
    bytes as lone surrogates (``\\udcff``), which tokenizers refuse with a TypeError."""
    for number, text in enumerate([*texts, *(pairs or ())], start=1):
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
            raise DataError(
                f"text {number} is not valid UTF-8 ({byte} at character {exc.start + 1})",
                "give UTF-8 text (set your terminal or locale to UTF-8, e.g. LANG=C.UTF-8)",
            ) from None
