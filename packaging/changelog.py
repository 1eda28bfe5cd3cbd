#!/usr/bin/env python3
"""The Debian changelog of the package from CHANGELOG.md (stdin), to stdout.

    packaging/changelog.py VERSION "NAME <EMAIL>" "RFC 2822 DATE" < CHANGELOG.md

One entry per `## [X.Y.Z]` section, newest first, each bullet of the section as a
`*` item (wrapped at 78 columns); the trailer names the maintainer and DATE for the
version being built and the section's own date for older ones.
"""
import re
import sys
import textwrap
from email.utils import format_datetime
from datetime import datetime, timezone


def main():
    version, maintainer, date = sys.argv[1:4]
    sections = []
    current = None
    for line in sys.stdin:
        m = re.match(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?", line)
        if m:
            current = {"version": m.group(1), "date": m.group(2), "items": []}
            sections.append(current)
            continue
        if current is not None and line.startswith("- "):
            current["items"].append(line[2:].strip())
        elif current is not None and line.startswith("  ") and current["items"]:
            current["items"][-1] += " " + line.strip()
    if not any(s["version"] == version for s in sections):
        sys.exit(f"changelog.py: CHANGELOG.md has no section [{version}]")
    for s in sections:
        print(f"postern ({s['version']}) unstable; urgency=medium\n")
        for item in s["items"] or ["Release " + s["version"] + "."]:
            item = item.replace("`", "")
            print(textwrap.fill(item, 78, initial_indent="  * ", subsequent_indent="    "))
        if s["version"] == version or not s["date"]:
            when = date
        else:
            when = format_datetime(datetime.strptime(s["date"], "%Y-%m-%d").replace(tzinfo=timezone.utc))
        print(f"\n -- {maintainer}  {when}\n")


if __name__ == "__main__":
    main()
