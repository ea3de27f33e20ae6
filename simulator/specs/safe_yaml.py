"""Reading a user's YAML file without letting it run away: bounded size, nesting and alias expansion, UTF-8 only.

yaml.safe_load already refuses arbitrary Python objects; what it does not bound is work. A 413-byte file of
nested anchors and aliases (`&a [*a, *a, ...]`, the "billion laughs") loads as a small graph of shared nodes and
explodes in whatever walks it next (validation, a repr in an error message); a deeply nested `[[[[...]]]]`
exhausts Python's recursion in the composer. So a file is checked in three passes, each linear in its size:
the byte count; the parser's events (nesting depth, before anything recursive runs); the composed node graph
(its size and depth as if every alias were expanded, measured once per node, and aliases that contain
themselves). Only then are Python objects built. Legitimate anchors and merge keys (`<<: *base`) still work.
"""
from __future__ import annotations

import copy
import errno
import functools
import stat
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Union

import yaml

from ..errors import SpecError
from .base import shorten

MAX_YAML_BYTES = 1 << 20        # 1 MiB: the largest shipped profile is ~12 KB
MAX_YAML_DEPTH = 32             # nesting levels, after alias expansion (a profile has 5)
MAX_YAML_NODES = 100_000        # values, after alias expansion (a profile has ~200)
MAX_PATH_CHARS = 4096           # Linux PATH_MAX

PathLike = Union[str, Path, Traversable]

# libyaml's C parser when PyYAML was built with it (the same safe constructors; 10-30x faster than the pure-Python
# scanner), else the pure-Python one. Both produce the same events and nodes, so the checks below apply to either.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_bytes(path: PathLike, what: str = "file") -> tuple[bytes, str]:
    """The bytes of a regular file of at most MAX_YAML_BYTES, and its name for messages; a SpecError naming the
    file and the problem otherwise (empty name, folder, missing, unreadable, too long a name, too large, empty)."""
    if isinstance(path, str):
        if not path.strip():
            raise SpecError(f"{what}: the path is empty")
        if len(path) > MAX_PATH_CHARS or "\x00" in path:
            raise SpecError(f"{what} {shorten(repr(path))}: not a usable path (over {MAX_PATH_CHARS} characters "
                            "or a NUL byte)")
        path = Path(path)
    where = shorten(str(path), 200)
    if isinstance(path, Path):
        try:
            st = path.stat()
        except FileNotFoundError:
            raise SpecError(f"{what} not found: {where}") from None
        except OSError as err:
            raise SpecError(f"{what} {where}: cannot read it ({_reason(err)})") from None
        if stat.S_ISDIR(st.st_mode):
            raise SpecError(f"{what} {where} is a folder, not a YAML file")
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(f"{what} {where} is not a regular file")
        if st.st_size > MAX_YAML_BYTES:
            raise SpecError(f"{what} {where} is {st.st_size:,} bytes; the limit is {MAX_YAML_BYTES:,}")
    elif not path.is_file():
        raise SpecError(f"{what} not found: {where}")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{what} {where}: cannot read it ({_reason(err)})") from None
    if len(data) > MAX_YAML_BYTES:
        raise SpecError(f"{what} {where} is over {MAX_YAML_BYTES:,} bytes, the limit")
    if not data.strip():
        raise SpecError(f"{what} {where} is empty")
    return data, where


def _reason(err: OSError) -> str:
    if err.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return err.strerror or type(err).__name__


def decode(data: bytes, where: str) -> str:
    """UTF-8 text (a byte-order mark is allowed); a SpecError naming the first bad byte otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise SpecError(f"{where}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); save the file "
                        "as UTF-8") from None


def parse_yaml(text: str, where: str) -> Any:
    """Safe YAML of one document with bounded nesting and expansion (module docstring); None for no document."""
    try:
        _check_nesting(text, where)
        loader = SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _measure(node, {}, set(), where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise SpecError(f"{where}: not valid YAML: {shorten(str(err), 400)}") from None


def read_yaml(path: PathLike, what: str = "file", shared: bool = False) -> Any:
    """read_bytes, decode and parse_yaml in one: the checked content of a YAML file.

    A file on disk is parsed once per process while its size and modification time stay the same (validate reads
    the same few profiles and presets for hundreds of rows); each call gets its own copy, so callers may change it,
    unless `shared` (for callers that only read it: the cached object itself, which must not be changed)."""
    if isinstance(path, str) and path.strip() and len(path) <= MAX_PATH_CHARS and "\x00" not in path:
        path = Path(path)
    if isinstance(path, Path):
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size <= MAX_YAML_BYTES:
            data = _read_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, what, str(path))
            return data if shared else copy.deepcopy(data)
    return _read_uncached(path, what)


def _read_uncached(path: PathLike, what: str) -> Any:
    data, where = read_bytes(path, what)
    return parse_yaml(decode(data, where), where)


@functools.lru_cache(maxsize=256)
def _read_cached(resolved: str, mtime_ns: int, size: int, what: str, shown: str) -> Any:
    """The parsed content of a file, keyed by its resolved path, modification time and size (errors are not
    cached: lru_cache keeps only returned values)."""
    return _read_uncached(Path(shown), what)


def _check_nesting(text: str, where: str) -> None:
    """Nesting depth from the parser's events (an explicit state machine, no recursion)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = event.start_mark.line + 1
                    raise SpecError(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels (line {line})")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as err:
        # PyYAML >= 6.0.4 caps flow nesting in its scanner, which reads ahead of the events counted above
        if "nesting depth" in str(err):
            mark = getattr(err, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise SpecError(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels{line}") from None
        raise


def _measure(node: yaml.Node, memo: dict, active: set, where: str) -> tuple[int, int]:
    """(values, depth) of `node` with every alias expanded; each node is measured once (memo), so the cost is
    linear in the file while the figures are those of the expanded document. Also rejects duplicate keys."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise SpecError(f"{where}: line {node.start_mark.line + 1}: an alias refers to a collection that contains "
                        "it (recursive anchor)")
    if isinstance(node, yaml.ScalarNode):
        memo[key] = (1, 1)
        return memo[key]
    active.add(key)
    if isinstance(node, yaml.MappingNode):
        _check_duplicate_keys(node, where)
        children = [n for pair in node.value for n in pair]
    else:
        children = list(node.value)
    count, depth = 1, 0
    for child in children:
        c, d = _measure(child, memo, active, where)
        count, depth = count + c, max(depth, d)
        if count > MAX_YAML_NODES:
            raise SpecError(f"{where}: expands to more than {MAX_YAML_NODES:,} values (anchors and aliases "
                            f"repeating one another near line {node.start_mark.line + 1})")
    if depth + 1 > MAX_YAML_DEPTH:
        raise SpecError(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels once aliases are expanded "
                        f"(line {node.start_mark.line + 1})")
    active.discard(key)
    memo[key] = (count, depth + 1)
    return memo[key]


def _check_duplicate_keys(node: yaml.MappingNode, where: str) -> None:
    seen: dict[tuple, int] = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        ident = (k.tag, k.value)
        line = k.start_mark.line + 1
        if ident in seen:
            raise SpecError(f"{where}: key {shorten(repr(k.value))} appears twice (lines {seen[ident]} and {line})")
        seen[ident] = line
