#!/usr/bin/env python3
"""Reads a feed with feedparser (the Universal Feed Parser) and prints what it understood as
JSON, for tests/feeds.rs:

    parse_feed.py [--content-type TYPE] < feed.xml

Prints {"bozo", "bozo_exception", "version", "encoding", "feed": {"title", "link", "id",
"updated", "updated_ts"}, "entries": [{"id", "title", "link", "published", "published_ts",
"updated", "updated_ts", "summary", "content"}]}; `*_ts` are unix seconds (None when the
date was not understood). `bozo` is feedparser's own verdict on well-formedness.
"""

import argparse
import calendar
import json
import sys

import feedparser


def ts(parsed):
    return calendar.timegm(parsed) if parsed else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--content-type", default=None)
    args = ap.parse_args()
    data = sys.stdin.buffer.read()
    headers = {"content-type": args.content_type} if args.content_type else None
    d = feedparser.parse(data, response_headers=headers)
    f = d.feed
    out = {
        "bozo": bool(d.bozo),
        "bozo_exception": repr(d.get("bozo_exception")) if d.bozo else None,
        "version": d.version,
        "encoding": d.get("encoding"),
        "feed": {
            "title": f.get("title"),
            "link": f.get("link"),
            "id": f.get("id"),
            "updated": f.get("updated"),
            "updated_ts": ts(f.get("updated_parsed")),
        },
        "entries": [
            {
                "id": e.get("id"),
                "title": e.get("title"),
                "link": e.get("link"),
                "published": e.get("published"),
                "published_ts": ts(e.get("published_parsed")),
                "updated": e.get("updated"),
                "updated_ts": ts(e.get("updated_parsed")),
                "summary": e.get("summary"),
                "content": [c.get("value") for c in e.get("content", [])],
            }
            for e in d.entries
        ],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
