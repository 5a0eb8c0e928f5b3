#!/usr/bin/env python3
"""Fails when modules of the crate import each other in a loop.

Usage: scripts/check_module_loops.py [--edges] [SRC_DIR]      (default: src)

Every `.rs` file under SRC_DIR is a module (`lib.rs` the root, `x/mod.rs` and `x.rs` the module
`x`). A file imports another when its code names a path into it: `use` trees and inline paths
starting with `crate::`, `super::`, `self::`, a child declared with `mod x;`, or a module alias
bound by `use`. A path is resolved to the longest module prefix that is a file, and then through
`pub use` re-exports to the file that defines the item, so `crate::credentials::Credentials`
counts as an import of the file that holds `Credentials`, not of the facade `mod.rs`. A module's
`pub use` of its own descendants is a re-export, not an import. Comments, string literals and
`#[cfg(test)]` items are ignored.

Prints each strongly connected component of more than one file with its edges and exits 1;
prints "no module import loops" and exits 0 otherwise. `--edges` also prints every edge.
Standard library only.
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def find_modules(src):
    """{module path (tuple of names): file path} for the library crate under src."""
    found = {}
    for root, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts == ["main"]:
                continue  # the binary: it reaches the library only through `stsvend::`
            if parts == ["lib"]:
                key = ()
            elif parts[-1] == "mod":
                key = tuple(parts[:-1])
            else:
                key = tuple(parts)
            found[key] = path
    return found


def strip_noise(text):
    """The source with comments gone and string/char literals emptied; line breaks kept."""
    out = []
    i, n = 0, len(text)
    raw_string = re.compile(r'b?r(#*)"')
    char_lit = re.compile(r"'(?:\\u\{[0-9a-fA-F]{1,6}\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'")
    while i < n:
        c = text[i]
        prev_word = i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2  # block comments nest in Rust
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c in "br" and not prev_word and raw_string.match(text, i):
            m = raw_string.match(text, i)
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            j = n if end < 0 else end + len(close)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"' or (c == "b" and not prev_word and text.startswith('b"', i)):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and char_lit.match(text, i):
            out.append("' '")
            i = char_lit.match(text, i).end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(text):
    """The text without items marked `#[cfg(test)]`, and the names of test-only `mod x;`."""
    test_mods = set()
    attr = re.compile(r"#\[cfg\(test\)\]")
    out, i = [], 0
    while True:
        m = attr.search(text, i)
        if not m:
            break
        out.append(text[i:m.start()])
        j = m.end()
        # The item runs to the first `;` outside braces or to the end of its first brace block.
        depth = 0
        while j < len(text):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif ch == ";" and depth == 0:
                decl = re.search(r"\bmod\s+(" + IDENT + r")\s*$", text[m.end():j])
                if decl:
                    test_mods.add(decl.group(1))
                j += 1
                break
            j += 1
        out.append("\n" * text.count("\n", m.start(), j))
        i = j
    out.append(text[i:])
    return "".join(out), test_mods


USE_STMT = re.compile(r"\b(pub\s*(?:\([^)]*\))?\s*)?use\s+([^;]*);")


def use_leaves(tree):
    """`a::{b, c::{self, d as e}, f::*}` -> [(segments, bound name or None, glob?)]."""
    tokens = re.findall(IDENT + r"|::|[{},*]", tree)
    pos = 0

    def parse(prefix):
        nonlocal pos
        leaves = []
        segs = list(prefix)
        while pos < len(tokens):
            tok = tokens[pos]
            if tok == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    leaves.extend(parse(segs))
                pos += 1
                return leaves
            if tok == "*":
                pos += 1
                leaves.append((segs, None, True))
                return leaves
            if tok in (",", "}"):
                break
            if tok == "::":
                pos += 1
                continue
            if tok == "as":
                pos += 1
                alias = tokens[pos] if pos < len(tokens) else None
                pos += 1
                leaves.append((segs, alias, False))
                return leaves
            segs = segs + [tok]
            pos += 1
            if pos < len(tokens) and tokens[pos] == "as":
                continue
            if pos >= len(tokens) or tokens[pos] in (",", "}"):
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                leaves.append((segs, segs[-1] if segs else None, False))
                return leaves
        if segs != list(prefix):
            leaves.append((segs, segs[-1], False))
        return leaves

    return parse([])


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = find_modules(src)
        self.text = {}
        self.children = {}
        skipped = set()
        for key in sorted(self.files, key=len):
            if any(key[:len(s)] == s for s in skipped):
                continue
            with open(self.files[key], encoding="utf-8", errors="replace") as f:
                text, test_mods = drop_test_items(strip_noise(f.read()))
            skipped.update(key + (name,) for name in test_mods)
            self.text[key] = text
            self.children[key] = set(re.findall(r"\bmod\s+(" + IDENT + r")\s*;", text))
        for key in list(self.files):
            if key not in self.text:
                del self.files[key]
        self.uses = {key: self._uses(key) for key in self.text}
        self.reexports = {key: self._reexports(key) for key in self.text}

    def absolute(self, here, segs):
        """Crate-absolute segments for a path written in module `here`, or None (external)."""
        if not segs:
            return None
        head, rest = segs[0], segs[1:]
        if head == "crate" or head == "$crate":
            base = []
        elif head == "self":
            base = list(here)
        elif head == "super":
            base = list(here[:-1])
        elif head in self.children.get(here, ()):
            base, rest = list(here), segs
        elif head in self.aliases(here):
            base = list(self.aliases(here)[head])
        else:
            return None
        for seg in rest:
            if seg == "super":
                base = base[:-1]
            elif seg != "self":
                base.append(seg)
        return base

    def _uses(self, here):
        """[(absolute segments, bound name, glob?, public?)] of every `use` in the module."""
        self._alias_cache = getattr(self, "_alias_cache", {})
        self._alias_cache[here] = {}
        result = []
        for m in USE_STMT.finditer(self.text[here]):
            public = m.group(1) is not None
            for segs, name, glob in use_leaves(m.group(2)):
                result.append((segs, name, glob, public))
        # Two passes: a `use` may go through a module bound by another `use`.
        for _ in range(2):
            for segs, name, glob, _public in result:
                full = self.absolute(here, segs)
                if full is not None and not glob and name and tuple(full) in self.files:
                    self._alias_cache[here][name] = tuple(full)
        return [(self.absolute(here, s), n, g, p) for s, n, g, p in result]

    def aliases(self, here):
        return getattr(self, "_alias_cache", {}).get(here, {})

    def _reexports(self, here):
        """{name: absolute segments} and glob targets re-exported by `pub use`."""
        named, globs = {}, []
        for full, name, glob, public in self.uses[here]:
            if not public or full is None:
                continue
            if glob:
                globs.append(full)
            elif name:
                named[name] = full
        return named, globs

    def module_of(self, full):
        """(module key, the rest of the path) for the longest prefix that is a module file."""
        for cut in range(len(full), -1, -1):
            if tuple(full[:cut]) in self.files:
                return tuple(full[:cut]), full[cut:]
        return (), full

    def target(self, full, seen=None):
        """The file key a path leads to, following `pub use` re-exports."""
        key, rest = self.module_of(full)
        seen = seen or set()
        if rest and (key, rest[0]) not in seen:
            seen.add((key, rest[0]))
            named, globs = self.reexports.get(key, ({}, []))
            if rest[0] in named:
                return self.target(list(named[rest[0]]) + rest[1:], seen)
            for g in globs:
                gkey, grest = self.module_of(list(g))
                if not grest and gkey != key:
                    return self.target(list(g) + rest, seen)
        return key

    def imports(self, here):
        """The set of module keys that module `here` imports."""
        deps = set()

        def add(full, in_public_use):
            if full is None:
                return
            to = self.target(full)
            descendant = len(to) > len(here) and to[:len(here)] == here
            if to == here or to == () or (in_public_use and descendant):
                return
            deps.add(to)

        for full, _name, _glob, public in self.uses[here]:
            add(full, public)
        code = USE_STMT.sub(lambda m: "\n" * m.group(0).count("\n"), self.text[here])
        heads = {"crate", "$crate", "self", "super"} | self.children[here] | set(self.aliases(here))
        path = re.compile(r"(?<![\w:])(\$?" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)")
        for m in path.finditer(code):
            if m.group(1) not in heads:
                continue
            segs = [m.group(1)] + re.findall(IDENT, m.group(2))
            add(self.absolute(here, segs), False)
        return deps


def loops(graph):
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main(argv):
    show_edges = "--edges" in argv
    args = [a for a in argv if a != "--edges"]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src = args[0] if args else "src"
    if not os.path.isdir(src):
        print(f"{src}: not a directory", file=sys.stderr)
        return 2
    crate = Crate(src)
    graph = {key: crate.imports(key) for key in crate.text}
    shown = lambda key: crate.files[key]
    if show_edges:
        for key in sorted(graph, key=shown):
            for dep in sorted(graph[key], key=shown):
                print(f"{shown(key)} -> {shown(dep)}")
    found = loops(graph)
    if not found:
        print(f"no module import loops among {len(graph)} module files")
        return 0
    for number, component in enumerate(sorted(found, key=len, reverse=True), 1):
        members = set(component)
        print(f"module import loop {number}: {len(component)} files import each other")
        for key in sorted(component, key=shown):
            inside = sorted((d for d in graph[key] if d in members), key=shown)
            print(f"  {shown(key)} imports {', '.join(shown(d) for d in inside)}")
    print("each file may import only modules that never import it back, directly or not")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
