#!/usr/bin/env python3
"""The stream text SPEC section 4 asks for, made from the raw rows of the
events table, independently of the service (which frames them with SQLite's
json_object()): the oracle of the stream suites.

  sse_oracle.py DB WHERE     prints the text of the rows matching WHERE, oldest first
                             (DB: a SQLite file or a postgresql:// URL)

Imported, event_data(type, order_id, patch, ts) is one event's data line,
and block_fields(block) the fields of one block a client received.
"""

import json
import sqlite3
import sys

import pgrows


class Obj(list):
    """A JSON object as its (key, value) pairs, in order."""


class Float(str):
    """A non-integer number, as written: refused when written out, not when
    parsed, so that a patch that is not JSON after it is still a string."""


class Unwritable(ValueError):
    pass


def _refuse(what):
    raise ValueError(what)


def _enc(v):
    if isinstance(v, Float):
        raise Unwritable("a non-integer number %s in a patch: SPEC does not say how one is written" % v)
    if isinstance(v, Obj):
        return "{" + ",".join(_enc(k) + ":" + _enc(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_enc(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    raise Unwritable("cannot write %r" % (v,))


def event_data(etype, order_id, patch, ts):
    """{"type","id","patch","ts"}, compact, keys in that order; a patch that
    is not JSON is a JSON string."""
    try:
        p = json.loads(patch, object_pairs_hook=Obj, parse_constant=_refuse, parse_float=Float)
    except ValueError:
        p = patch
    return _enc(Obj([("type", etype), ("id", order_id), ("patch", p), ("ts", ts)]))


def block_fields(block):
    """The fields of one block of the stream (bytes, without its blank
    line) as an EventSource reads them: comments skipped, one space after
    the colon dropped. Returns (fields, repeated): the last value of each
    field name, and the names written more than once."""
    fields, repeated = {}, []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name in fields:
            repeated.append(name)
        fields[name] = value
    return fields, repeated


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: sse_oracle.py DB WHERE")
    if pgrows.is_url(sys.argv[1]):
        db = pgrows.connect(sys.argv[1])
        patch_col = "patch::text"
    else:
        db = sqlite3.connect(sys.argv[1], timeout=10)
        patch_col = "patch"
    out = []
    try:
        for eid, etype, order_id, patch, ts in db.execute(
                "SELECT id, type, order_id, %s, ts FROM events WHERE %s ORDER BY id"
                % (patch_col, sys.argv[2])):
            out.append("id: %d\nevent: %s\ndata: %s\n\n" % (eid, etype, event_data(etype, order_id, patch, ts)))
    except Unwritable as e:
        sys.exit("sse_oracle: %s" % e)
    sys.stdout.buffer.write("".join(out).encode("utf-8"))


if __name__ == "__main__":
    main()
