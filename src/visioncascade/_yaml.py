"""A YAML loader shared by the cascade file (runtime) and the rules file (api): a key given twice in one
mapping is an error naming the key and both lines, instead of YAML's silent "the last one wins"."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["DuplicateKeyError", "UniqueKeyLoader"]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; ``problem`` names the key and both lines and says what to do."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML itself keeps the last one, so
    e.g. a context listed twice would silently route to the model of its second entry)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}  # key -> line (1-based) where it is first given
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key not in first:
                    first[key] = line
                    continue
            except TypeError:  # an unhashable key: the SafeLoader's own error follows
                continue
            where = f"lines {first[key]} and {line}" if first[key] != line else f"both on line {line}"
            raise DuplicateKeyError(
                None,
                None,
                f"the key {key!r} is given twice in one mapping ({where}); keep one of them",
                key_node.start_mark,
            )
        return super().construct_mapping(node, deep=deep)
