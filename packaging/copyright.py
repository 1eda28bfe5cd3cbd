#!/usr/bin/env python3
"""Writes the package's machine-readable copyright file (DEP-5) to stdout.

    cargo metadata --format-version 1 --locked | packaging/copyright.py URL

Postern's own files, then one paragraph per crate linked into postern, postern-gui or
postern-helper (normal dependencies for this platform, build scripts and dev
dependencies left out), with its licence expression and authors as its Cargo.toml
says, then one paragraph per licence named: a pointer to /usr/share/common-licenses
where Debian ships the text, else the text from a crate's own licence file.
"""
import json
import os
import re
import sys

ROOTS = ["postern-helper", "postern-cli", "postern-gui"]
COMMON = {
    "Apache-2.0": "Apache-2.0",
    "GPL-2.0-only": "GPL-2",
    "GPL-3.0-or-later": "GPL-3",
    "LGPL-2.1-or-later": "LGPL-2.1",
    "MPL-2.0": "MPL-2.0",
    "CC0-1.0": "CC0-1.0",
}
# License file names to look for, per SPDX id, in a crate's source directory.
FILE_HINTS = {
    "MIT": ["LICENSE-MIT", "LICENSE-MIT.md", "LICENSE.MIT", "LICENSE-MIT.txt", "LICENSE"],
    "ISC": ["LICENSE-ISC", "LICENSE"],
    "Zlib": ["LICENSE-ZLIB", "LICENSE-ZLIB.md", "LICENSE-Zlib", "LICENSE"],
    "BSD-3-Clause": ["LICENSE-BSD", "LICENSE-BSD-3-Clause", "LICENSE"],
    "BSD-2-Clause": ["LICENSE-BSD", "LICENSE-BSD-2-Clause", "LICENSE"],
    "BSD-1-Clause": ["LICENSE-BSD", "LICENSE"],
    "0BSD": ["LICENSE-0BSD", "LICENSE-0BSD.md", "LICENSE"],
    "BSL-1.0": ["LICENSE-BOOST", "LICENSE_1_0.txt", "LICENSE-BSL", "LICENSE"],
    "Unlicense": ["UNLICENSE", "LICENSE-UNLICENSE", "LICENSE"],
    "Unicode-3.0": ["LICENSE-UNICODE", "LICENSE-Unicode", "LICENSE"],
    "LLVM-exception": [],
}


def ids(expr):
    return [t for t in re.split(r"[\s()/]+", expr) if t and t not in ("OR", "AND", "WITH")]


def normalise(expr):
    # Old Cargo.toml style "MIT/Apache-2.0" means OR.
    return re.sub(r"\s*/\s*", " OR ", expr.strip())


def field(text):
    """A DEP-5 multi-line value: each line indented, empty lines as ' .'."""
    out = []
    for line in text.rstrip().splitlines():
        line = line.rstrip()
        out.append(" " + line if line else " .")
    return "\n".join(out)


def licence_text(text):
    """A crate's licence file as the licence's text: its copyright lines (that crate's
    holders, given in each crate's paragraph instead) and leading blank lines dropped."""
    lines = [l for l in text.splitlines()
             if not re.match(r"\s*(copyright\b|\(c\)|all rights reserved)", l, re.I)]
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else ""
    meta = json.load(sys.stdin)
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    by_name = {pkgs[i]["name"]: i for i in nodes if pkgs[i]["source"] is None}
    seen, todo = set(), [by_name[r] for r in ROOTS]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for d in nodes[i]["deps"]:
            if any(k["kind"] is None for k in d["dep_kinds"]):
                todo.append(d["pkg"])
    crates = sorted((pkgs[i] for i in seen if pkgs[i]["source"] is not None),
                    key=lambda p: (p["name"], p["version"]))

    print("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    print("Upstream-Name: postern")
    if url:
        print(f"Source: {url}")
    print("Comment: The binaries link the Rust crates listed below statically; each")
    print(" crate's paragraph gives its licence as its Cargo.toml declares it.")
    print()
    print("Files: *")
    print("Copyright: 2026 The Postern developers")
    print("License: GPL-3.0-or-later")
    print()
    licences = {"GPL-3.0-or-later": ("common", "GPL-3")}
    for p in crates:
        expr = p.get("license")
        if expr:
            expr = normalise(expr)
        else:
            expr = "LicenseRef-" + p["name"]
            lf = p.get("license_file")
            if lf:
                path = os.path.join(os.path.dirname(p["manifest_path"]), lf)
                licences.setdefault(expr, ("file", path))
        authors = ", ".join(a for a in p.get("authors") or []) or f"The {p['name']} authors"
        print(f"Files: rust-crates/{p['name']}-{p['version']}/*")
        print(f"Copyright: {authors}")
        print(f"License: {expr}")
        src = p.get("repository") or f"https://crates.io/crates/{p['name']}"
        print(f"Comment: The {p['name']} crate, version {p['version']} ({src}).")
        print()
        for lid in ids(expr):
            if lid in licences:
                continue
            if lid in COMMON:
                licences[lid] = ("common", COMMON[lid])
                continue
            crate_dir = os.path.dirname(p["manifest_path"])
            for name in FILE_HINTS.get(lid, ["LICENSE-" + lid, "LICENSE"]):
                path = os.path.join(crate_dir, name)
                # A plain LICENSE file only stands for `lid` when it is the only licence.
                if name == "LICENSE" and len(ids(expr)) > 1:
                    continue
                if os.path.isfile(path):
                    licences[lid] = ("file", path)
                    break
    for lid in sorted(licences):
        kind, what = licences[lid]
        print(f"License: {lid}")
        if kind == "common":
            print(field(f"On Debian systems, the complete text of this licence is in\n"
                        f"/usr/share/common-licenses/{what}."))
        else:
            with open(what, encoding="utf-8", errors="replace") as f:
                print(field(licence_text(f.read())))
        print()
    missing = sorted({i for p in crates for i in ids(normalise(p.get("license") or ""))}
                     - set(licences) - {"LLVM-exception"})
    for lid in missing:
        print(f"License: {lid}")
        print(field(f"The SPDX licence {lid}: https://spdx.org/licenses/{lid}.html"))
        print()
    if missing:
        print(f"copyright.py: no licence text found for {', '.join(missing)}", file=sys.stderr)


if __name__ == "__main__":
    main()
