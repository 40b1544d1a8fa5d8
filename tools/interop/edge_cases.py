#!/usr/bin/env python3
"""Edge-case NDJSON for the interoperability check: generate pages, serve them on loopback.

    edge_cases.py gen DIR [--pages N]       write DIR/pageK.json (K = 1..N) and DIR/expected.json
    edge_cases.py serve DIR PORT_FILE       serve DIR/page*.json on 127.0.0.1 (a free port, written
                                            to PORT_FILE) until killed or --max-seconds pass

Every line served is recorded in expected.json with what pinflow must make of it: a row
("row"), or a dead letter ("dead", with a word its reason must contain). check.py parses the
row lines itself (json.loads, an RFC 3339 parser of its own) and compares them with the file.

The records cover: every field missing or null, an empty object (a dead letter), empty / single / two-value /
long lists, integers in float fields (including ones that do not fit 53 bits and u64), the float
extremes (subnormals, the largest finite, -0.0), correctly-rounded decimal parsing (halfway
cases, long mantissas, 2000 random floats written with repr()), large offsets, timestamps with
offsets, lowercase and space separators, long fractions, leap seconds and far-away years,
unicode (escapes, surrogate pairs, NUL, combining marks, 4-byte UTF-8), strings longer than
the 64-byte statistics truncation, duplicate keys, unknown nested fields, CRLF and blank lines,
an array page, a pretty-printed one-object page, a gzip-encoded page, and records that must be
dead-lettered (wrong types, bad timestamps, out-of-range ids, invalid JSON).
"""

import argparse
import gzip
import json
import os
import random
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEED = 20261126


def rows_and_dead():
    """(row_lines, dead_lines): raw JSON texts. Row lines are written exactly as listed."""
    rows = []
    dead = []
    known = []
    nid = [1000]

    def next_id():
        nid[0] += 1
        return nid[0]

    def rec(**fields):
        d = {"id": next_id()}
        d.update(fields)
        return d

    def add(d):
        rows.append(json.dumps(d, ensure_ascii=False))

    full = dict(
        ts="2026-11-24T12:00:00.123456Z",
        service="edge",
        level="INFO",
        host="h-1",
        latency_ms=1.5,
        message="full record",
        values=[1.0, 2.0, 3.0, 4.0],
    )
    add(rec(**full))
    # Each field missing, then each field null (missing and null are both null in the file).
    for k in full:
        d = rec(**full)
        del d[k]
        d["message" if k != "message" else "service"] = f"missing {k}"
        add(d)
        d = rec(**full)
        d[k] = None
        d["message" if k != "message" else "service"] = f"null {k}"
        add(d)
    # No id at all: identified by a unique service name instead.
    for k in range(3):
        add({"service": f"no-id-{k}", "values": [k, k + 1.5]})
    add({"service": "no-id-null", "id": None})
    # Only an id.
    rows.append(json.dumps({"id": next_id()}))

    # List shapes: empty, single, two, every length across the 8-lane kernel's tails.
    add(rec(message="empty list", values=[]))
    add(rec(message="single", values=[42.5]))
    add(rec(message="single negative zero", values=[-0.0]))
    add(rec(message="pair", values=[1.0, 3.0]))
    add(rec(message="constant", values=[3.25] * 67))
    add(rec(message="constant big", values=[1e9 + 0.5] * 1000))
    for n in range(1, 34):
        add(rec(message=f"length {n}", values=[(i * 7919 % 113) - 56.25 for i in range(n)]))
    add(rec(message="long list", values=[((i * 2654435761) % 100003) / 7.0 for i in range(10000)]))

    rng = random.Random(SEED)
    # Large offset: the naive one-pass variance loses every digit here.
    for n in (2, 3, 8, 64, 1000):
        add(rec(message=f"offset 1e9 n={n}", values=[1e9 + rng.random() for _ in range(n)]))
    add(rec(message="offset 1e15", values=[1e15 + rng.random() for _ in range(100)]))
    # Cancellation: mean near zero with large values.
    add(rec(message="cancel", values=[1e16, 1.0, -1e16, 2.0]))
    add(rec(message="symmetric", values=[-5.5, 5.5, -2.25, 2.25]))

    # Float extremes that stay finite in every statistic.
    add(rec(message="subnormals", values=[5e-324, 1e-320, 2.2250738585072014e-308, 0.0]))
    add(rec(message="neg subnormal", values=[-5e-324]))
    add(rec(message="max finite", values=[1.7976931348623157e308]))
    add(rec(message="min finite", values=[-1.7976931348623157e308]))
    add(rec(message="max and min", values=[1.7976931348623157e308, -1.7976931348623157e308]))
    add(rec(message="zeros", values=[0.0, -0.0, 0.0, -0.0]))
    add(rec(message="tiny and huge", values=[1e-300, 1e300, -1e-300]))
    add(rec(message="1e150 squares", values=[1e150, -1e150, 3e150]))
    add(rec(message="powers", values=[2.0**e for e in range(-60, 61, 3)]))

    # Integers where floats are expected (values, latency_ms).
    add(rec(message="int values", values=[1, 2, 3, -4, 0], latency_ms=7))
    add(rec(message="2^53+1", values=[9007199254740993, -9007199254740993],
            latency_ms=9007199254740993))
    add(rec(message="i64 extremes", values=[9223372036854775807, -9223372036854775808]))
    add(rec(message="u64 max", values=[18446744073709551615], latency_ms=18446744073709551615))
    add(rec(message="mixed int float", values=[1, 2.5, 3, 4.75]))
    add(rec(message="latency -0", latency_ms=-0.0))
    add(rec(message="latency subnormal", latency_ms=5e-324))
    add(rec(message="latency max", latency_ms=1.7976931348623157e308))

    # id extremes.
    for v in (0, -1, 9223372036854775807, -9223372036854775808):
        rows.append(json.dumps({"id": v, "message": f"id {v}"}))

    # Decimal texts that need correct rounding (written by hand, not by json.dumps).
    hand = [
        "0.1", "0.2", "0.30000000000000004", "1e22", "1e23", "9007199254740993.0",
        "3.141592653589793238462643383279502884197", "2.2250738585072011e-308",
        "2.2250738585072012e-308", "4.9406564584124654e-324", "2.4703282292062328e-324",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "1.00000000000000011102230246251565404236316680908203126",
        "9007199254740993", "1E5", "1e+5", "-1.5e-5", "0e0", "-0",
        "0.000000000000000000000000000000000000000000001", "1.7976931348623157e308",
        "1.7976931348623158e308", "7.038531e-26", "8.98846567431158e307",
        "1448997445238699", "5.0e-324",
        # The largest finite double written out in full (309 integer digits).
        "17976931348623157" + "0" * 292 + ".0",
    ]
    for k, text in enumerate(hand):
        rows.append('{"id":%d,"message":"decimal %d","latency_ms":%s,"values":[%s,%s]}'
                    % (next_id(), k, text, text, text))
    # 2000 random doubles of every magnitude, shortest repr: must come back bit for bit.
    batch = []
    for _ in range(2000):
        bits = rng.getrandbits(64)
        x = struct.unpack("<d", bits.to_bytes(8, "little"))[0]
        if x != x or x in (float("inf"), float("-inf")):
            continue
        batch.append(x)
    for k in range(0, len(batch), 50):
        add(rec(message=f"random doubles {k}", values=batch[k:k + 50]))
    for _ in range(200):
        n = rng.randrange(0, 40)
        add(rec(message="random uniform", latency_ms=rng.uniform(0, 5000),
                values=[rng.gauss(100, 30) for _ in range(n)]))

    # Timestamps: offsets, separators, fractions, leap second, far years.
    stamps = [
        "2026-11-24T18:00:00Z", "2026-11-24T19:30:00+01:30", "2026-11-24T10:00:00-08:00",
        "2026-11-24t18:00:00z", "2026-11-24 18:00:00Z", "2026-11-24T18:00:00.1Z",
        "2026-11-24T18:00:00.123Z", "2026-11-24T18:00:00.123456789Z",
        "2026-11-24T18:00:00.1234567+05:45", "2026-11-24T18:00:00+00:00",
        "2026-11-24T18:00:00-00:00", "2026-12-31T23:30:00-01:00", "2024-02-29T23:59:59.999999Z",
        "2016-12-31T23:59:60Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z",
        "1969-12-31T23:59:59.5Z", "1900-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z", "2000-01-01T00:00:00+23:59", "2000-01-01T00:00:00-23:59",
    ]
    for s in stamps:
        add(rec(message=f"ts {s}", ts=s))

    # Strings: escapes, unicode, NUL, long.
    texts = [
        "", " ", "say \"hi\" \\ back\\slash", "tab\there\nnewline\r\n\b\f/",
        "café naïve", "日本語のログ", "emoji 😀 🏳️‍🌈 👩🏽‍💻", "e\u0301 combining", "\u0000NUL\u0000",
        "ctl \u0001\u001f\u007f", "rtl עברית العربية", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 4-byte", "\uffff\ufffd",
        "x" * 63, "y" * 64, "z" * 65, "é" * 40, "long " + "ü" * 5000,
        "\U0010ffff max code point",
    ]
    for k, t in enumerate(texts):
        add(rec(message=t, service=t[:70] if k % 2 else "svc", host=t[:10], level=t[:3]))
    # The same strings as \u escapes (json.dumps with ensure_ascii): surrogate pairs included.
    for k, t in enumerate(texts[:13]):
        rows.append(json.dumps({"id": next_id(), "message": t, "service": "escaped"},
                               ensure_ascii=True))
    # A string that sorts below and above everything else, for the column statistics.
    add(rec(message="\u0000", service="\u0000", host="\U0010ffff" * 20, level="\U0010ffff"))

    # Duplicate keys (the last one wins in pinflow and in json.loads) and unknown fields.
    rows.append('{"id":%d,"service":"first","service":"second","values":[1],"values":[2,3]}'
                % next_id())
    rows.append('{"id":%d,"extra":{"values":[9,9],"id":5},"tags":["a",{"b":null}],'
                '"values":[0.5],"ok":true,"n":null}' % next_id())
    rows.append('  {"id":%d,  "message" : "spaces" , "values" : [ 1 , 2 ]  }  ' % next_id())

    # Statistics whose inputs are finite but whose sums overflow f64 (check.py reports them
    # as KNOWN: pinflow gives inf/NaN where the exact mean is finite).
    add(rec(message="sum overflows", values=[1.5e308, 1.5e308]))
    add(rec(message="sum overflows 3", values=[1.7976931348623157e308] * 3))

    # Records that must become dead letters, with a word of the reason.
    def bad(text, reason):
        dead.append({"line": text, "reason": reason})

    # Valid JSON whose treatment the documentation leaves open: a row equal to what json.loads
    # makes of it, or a dead letter; check.py says which (KNOWN) and fails on anything else.
    # (None at present: integers beyond u64 and numbers beyond the f64 range are settled.)
    def either(text, why):
        known.append({"line": text, "why": why})

    # Integers beyond u64 are doubles (simd-json's big-int-as-float, as json.loads, pyarrow and
    # DuckDB read them, correctly rounded): values in float fields, a wrong type in `id`.
    rows.append('{"id":%d,"values":[123456789012345678901234567890]}' % next_id())
    rows.append('{"id":%d,"latency_ms":18446744073709551616,"values":[-18446744073709551617,'
                '18446744073709551615,-9223372036854775809]}' % next_id())
    bad('{"id":18446744073709551616}', "field `id`: expected an integer, got a fractional number")
    bad('{"id":-9223372036854775809}', "field `id`: expected an integer, got a fractional number")
    # Numbers beyond the f64 range are not numbers pinflow reads: the record is invalid JSON.
    bad('{"id":%d,"values":[1e400]}' % next_id(), "invalid JSON")
    bad('{"id":%d,"latency_ms":-1e400}' % next_id(), "invalid JSON")
    bad('{"id":%d,"values":[1%s]}' % (next_id(), "0" * 309), "invalid JSON")
    bad('{"id":%d,"message":"lone \\ud800 surrogate"}' % next_id(), "invalid JSON")

    bad('{"id":%d,"values":[1,null,3]}' % next_id(), "values[1]")
    bad('{"id":%d,"values":[1,"2"]}' % next_id(), "values[1]")
    bad('{"id":%d,"values":[[1]]}' % next_id(), "values")
    bad('{"id":%d,"values":"1,2"}' % next_id(), "values")
    bad('{"id":%d,"values":{"a":1}}' % next_id(), "values")
    bad('{"id":"%d"}' % next_id(), "id")
    bad('{"id":%d.5}' % next_id(), "id")
    bad('{"id":9223372036854775808}', "id")
    bad('{"id":%d,"ts":"2026-02-30T00:00:00Z"}' % next_id(), "ts")
    bad('{"id":%d,"ts":"2026-11-24T18:00:00"}' % next_id(), "ts")
    # (A number is an epoch time since issue 17; a boolean is no time at all.)
    bad('{"id":%d,"ts":true}' % next_id(), "ts")
    # The empty object: no field of the schema, so a dead letter, never a row of nulls.
    bad("{}", "no field of the schema")
    bad('{"id":%d,"latency_ms":"fast"}' % next_id(), "latency_ms")
    bad('{"id":%d,"message":42}' % next_id(), "message")
    bad('{"id":%d,"level":true}' % next_id(), "level")
    bad('{"id":%d,"values":[1,2' % next_id(), "invalid JSON")
    bad('{"id":%d,"values":[NaN]}' % next_id(), "invalid JSON")
    bad('{"id":%d,"latency_ms":Infinity}' % next_id(), "invalid JSON")
    bad('{"id":%d,"message":"bad escape \\x41"}' % next_id(), "invalid JSON")
    return rows, dead, known


def gen(out_dir, pages):
    os.makedirs(out_dir, exist_ok=True)
    rows, dead, known = rows_and_dead()
    rng = random.Random(SEED + 1)
    items = [("row", r) for r in rows] + [("dead", d) for d in dead] + \
        [("known", k) for k in known]
    rng.shuffle(items)
    # Pages 1 and 2 are special (array, single pretty-printed object); the rest NDJSON.
    per = (len(items) + pages - 3) // (pages - 2)
    chunks = [items[k:k + per] for k in range(0, len(items), per)]
    while len(chunks) < pages - 2:
        chunks.append([])
    expected = {"seed": SEED, "rows": [], "dead": [], "known": [], "pages": pages,
                "gzip_pages": []}
    # Page 1: a JSON array of three objects; page 2: one pretty-printed object.
    arr = [{"id": 900001, "message": "array page", "values": [1, 2]},
           {"id": 900002, "message": "array page"},
           {"id": 900003, "values": []}]
    with open(os.path.join(out_dir, "page1.json"), "w", encoding="utf-8") as f:
        json.dump(arr, f)
    expected["rows"] += [json.dumps(a) for a in arr]
    obj = {"id": 900004, "message": "pretty object", "nested": {"x": [1, 2]}, "values": [0.25]}
    with open(os.path.join(out_dir, "page2.json"), "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    expected["rows"].append(json.dumps(obj))
    for k, chunk in enumerate(chunks):
        page = k + 3
        lines = []
        for j, (kind, item) in enumerate(chunk):
            text = item if kind == "row" else item["line"]
            # A few CRLF line ends and blank lines between records.
            end = "\r\n" if j % 17 == 5 else "\n"
            if j % 23 == 11:
                end += "\n"
            lines.append(text + end)
            if kind == "row":
                expected["rows"].append(text)
            else:
                expected[kind].append(item)
        body = "".join(lines).encode("utf-8")
        if page % 7 == 3:
            # Served with Content-Encoding: gzip.
            expected["gzip_pages"].append(page)
            body = gzip.compress(body, mtime=0)
            name = f"page{page}.json.gz"
        else:
            name = f"page{page}.json"
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(body)
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=True, indent=0)
    print(f"edge_cases: {len(expected['rows'])} records, {len(expected['dead'])} bad ones and "
          f"{len(expected['known'])} open cases in {pages} pages under {out_dir}")


def serve(root, port_file, max_seconds):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as pinflow expects from real servers

        def do_GET(self):
            name = os.path.basename(self.path.split("?", 1)[0])
            plain = os.path.join(root, name)
            gz = plain + ".gz"
            headers = {"Content-Type": "application/x-ndjson"}
            if name.startswith("page") and os.path.isfile(plain):
                with open(plain, "rb") as f:
                    body = f.read()
            elif name.startswith("page") and os.path.isfile(gz):
                with open(gz, "rb") as f:
                    body = f.read()
                headers["Content-Encoding"] = "gzip"
            else:
                body = b"not found\n"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(httpd.server_address[1]))
    os.replace(tmp, port_file)
    # Bounded: the server stops by itself even if nobody kills it.
    timer = threading.Timer(max_seconds, httpd.shutdown)
    timer.daemon = True
    timer.start()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--pages", type=int, default=24)
    s = sub.add_parser("serve")
    s.add_argument("dir")
    s.add_argument("port_file")
    s.add_argument("--max-seconds", type=float, default=300)
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.dir, a.pages)
    else:
        serve(a.dir, a.port_file, a.max_seconds)


if __name__ == "__main__":
    sys.exit(main())
