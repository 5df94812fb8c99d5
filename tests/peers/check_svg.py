#!/usr/bin/env python3
"""Parses an SVG badge with the standard library's XML parser and prints what a reader gets
from it as JSON, for tests/feeds.rs:

    check_svg.py < badge.svg

Prints {"ok": true, "root", "width", "height", "role", "aria_label", "title", "texts"}, or
{"ok": false, "error"} when the document is not well-formed XML.
"""

import json
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"


def main():
    data = sys.stdin.buffer.read()
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        json.dump({"ok": False, "error": str(e)}, sys.stdout)
        return
    title = root.find(SVG + "title")
    json.dump(
        {
            "ok": True,
            "root": root.tag,
            "width": root.get("width"),
            "height": root.get("height"),
            "role": root.get("role"),
            "aria_label": root.get("aria-label"),
            "title": title.text if title is not None else None,
            "texts": [
                {"text": t.text, "textLength": t.get("textLength"), "hidden": t.get("aria-hidden")}
                for t in root.iter(SVG + "text")
            ],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
