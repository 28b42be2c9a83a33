"""Nested dicts of arrays ("trees"), the one data shape every role passes around.

Observations (``{"front": img, "wrist": img, "state": vec}``), chunks, rollouts, batches and
weights are all dicts whose leaves are numpy arrays or torch tensors. These functions are the
only code in the project that walks such a tree; they are thin names over optree, which does the
walking in C++ and keeps each dict's key order.

On the wire a tree travels flat, its leaves named by their "/"-joined path
(``{"obs": {"front": a}}`` -> ``{"obs/front": a}``); `flatten` and `unflatten` convert.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import optree

SEPARATOR = "/"


def map(fn: Callable, tree: Any, *rest: Any) -> Any:  # noqa: A001 - the natural name, used as tree.map
    """`fn` applied leaf by leaf to trees of the same structure; the result has that structure.

    A tree whose structure differs from the first raises ValueError naming both structures.
    """
    return optree.tree_map(fn, tree, *rest, none_is_leaf=True)


def assign(dst: Any, index: Any, src: Any) -> None:
    """``leaf[index] = src_leaf`` for every leaf of `dst` (arrays) and the matching one of `src`."""
    optree.tree_map(lambda d, v: d.__setitem__(index, v), dst, src, none_is_leaf=True)


def leaves(tree: Any) -> list:
    """The leaves, in the order `flatten` names them (dict keys sorted)."""
    return optree.tree_leaves(tree, none_is_leaf=True)


def items(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list[tuple[tuple, Any]]:
    """(path, leaf) pairs in `leaves` order; a path is the tuple of keys from the root to the leaf.
    `is_leaf(node)` True stops the walk there (e.g. at lists, which are otherwise walked too)."""
    paths, values, _ = optree.tree_flatten_with_path(tree, is_leaf=is_leaf, none_is_leaf=True)
    return list(zip(paths, values))


def flatten(tree: Mapping) -> dict[str, Any]:
    """``{"obs": {"front": a}, "action": b}`` -> ``{"action": b, "obs/front": a}``.

    Keys are checked by the caller that needs a rule for them (the wire protocol does); here they
    are joined with "/" as they are.
    """
    return {SEPARATOR.join(str(part) for part in path): value for path, value in items(tree)}


def unflatten(flat: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict:
    """The inverse of `flatten`: "/"-joined names -> nested dicts.

    Raises ValueError for a name that is listed twice, or that is both a leaf and the prefix of
    another name, because either would silently lose an array.
    """
    nested: dict = {}
    pairs = flat.items() if isinstance(flat, Mapping) else flat
    for name, value in pairs:
        *parents, leaf = name.split(SEPARATOR)
        node = nested
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{name!r} lies under {SEPARATOR.join(parents[:depth + 1])!r}, which is itself a leaf")
            node = child
        if leaf in node:
            what = "is listed twice" if not isinstance(node[leaf], dict) else "is also a prefix of other names"
            raise ValueError(f"{name!r} {what}")
        node[leaf] = value
    return nested


def structure(tree: Any) -> Any:
    """A hashable description of the tree's shape (its dict keys, not its leaves), for comparisons."""
    return optree.tree_structure(tree, none_is_leaf=True)
