"""Read-only queries on the PostgreSQL backend for the test tools, through
psql (no driver needed): python3 stdlib only.

  import pgrows
  if pgrows.is_url(target):
      db = pgrows.connect(target)
      head = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

execute(SQL, params) runs SQL (each ? replaced by one of params, an int or
a str, as a literal) in one psql process and gives its rows as tuples:
bigint and integer columns are ints, text columns strs, json columns the
parsed value (cast them ::text to get the stored text). Each call is one
statement, so one snapshot.
"""

import json
import os
import shutil
import subprocess


def is_url(target):
    return target.startswith("postgresql://") or target.startswith("postgres://")


def _psql():
    bindir = os.environ.get("PG_BINDIR")
    if bindir and os.access(os.path.join(bindir, "psql"), os.X_OK):
        return os.path.join(bindir, "psql")
    return shutil.which("psql") or "psql"


def _literal(v):
    if isinstance(v, bool) or v is None:
        raise ValueError("unsupported parameter %r" % (v,))
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


class Result:
    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return list(self.rows)

    def __iter__(self):
        return iter(self.rows)


class Conn:
    def __init__(self, url, timeout=30):
        self.url = url
        self.timeout = timeout

    def execute(self, sql, params=()):
        parts = sql.split("?")
        if len(parts) != len(params) + 1:
            raise ValueError("%d parameters for %d placeholders" % (len(params), len(parts) - 1))
        text = parts[0]
        for p, rest in zip(params, parts[1:]):
            text += _literal(p) + rest
        # each row as a JSON array of its columns, in order
        wrapped = ("SELECT coalesce(json_agg((SELECT json_agg(j.value ORDER BY j.ordinality) "
                   "FROM json_each(row_to_json(q)) WITH ORDINALITY AS j)), '[]')::text "
                   "FROM (%s) AS q" % text)
        out = subprocess.run(
            [_psql(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url, "-c", wrapped],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=self.timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError("psql failed (%d): %s" % (out.returncode,
                                                         out.stderr.decode(errors="replace").strip()))
        rows = json.loads(out.stdout.decode("utf-8"))
        return Result([tuple(r or ()) for r in rows])

    def close(self):
        pass


def connect(url, timeout=30):
    return Conn(url, timeout)
