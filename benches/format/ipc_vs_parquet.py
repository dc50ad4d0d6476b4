#!/usr/bin/env python3
"""Arrow IPC (Strata's segment format) against Parquet on the same rows.

The storage issue asks whether Parquet would serve segment reads better than
Arrow IPC with a footer index. This measures the two formats on TPC-H
lineitem rows laid out as Strata lays out a segment (batches / row groups of
65,536 rows), read the two ways Strata reads segments:

- scan: four columns of every batch (what TPC-H Q1/Q6 read), from a
  memory-mapped file, with max() of each column per batch (the same work on
  both, so a mapped file's pages are really read);
- lookup: one batch / row group (what a point lookup decodes after the
  footer's entity-hash ranges picked it), from a memory-mapped file, and one
  row of every column taken from it;

and the file sizes. The page cache is warm (files are read once first), which
is the steady state of a local directory or a warm disk cache; a cold read
from S3 would favour the smaller file, see the printed sizes.

It uses pyarrow (Arrow C++) for both formats, so it measures the formats'
decode costs, not Strata's reader; Strata's IPC path is the same idea
(`FileDecoder` over the mapping, no copies).

    python3 benches/format/ipc_vs_parquet.py                  # data from the harness cache
    python3 benches/format/ipc_vs_parquet.py --rows 2000000 --repeat 9
"""

import argparse
import glob
import os
import statistics
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

BATCH = 65_536
SCAN_COLS = ["l_quantity", "l_extendedprice", "l_discount", "l_shipdate"]


def source_rows(path, rows):
    with pa.memory_map(path) as f:
        r = ipc.open_file(f)
        got, out = 0, []
        for i in range(r.num_record_batches):
            b = r.get_batch(i)
            out.append(b)
            got += b.num_rows
            if got >= rows:
                break
        t = pa.Table.from_batches(out).slice(0, rows)
    return t.combine_chunks()


def write_ipc(t, path, compression=None):
    opts = ipc.IpcWriteOptions(compression=compression)
    with pa.OSFile(path, "wb") as f:
        w = ipc.new_file(f, t.schema, options=opts)
        for b in t.to_batches(max_chunksize=BATCH):
            w.write_batch(b)
        w.close()


def write_parquet(t, path, compression, rows=BATCH):
    pq.write_table(t, path, row_group_size=rows, compression=compression,
                   write_statistics=True, use_dictionary=True)


def timed(fn, repeat):
    fn()  # warm the page cache and the code
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def use_columns(cols):
    """The same work on the decoded columns for every format: an aggregate
    per column (so a mapped file's pages are really read)."""
    return [pc.max(c) for c in cols]


def use_row(b, k):
    """A point lookup's work on its batch: take one row of every column."""
    return b.take(pa.array([k % b.num_rows])).to_pylist()


def ipc_scan(path):
    def run():
        with pa.memory_map(path) as f:
            r = ipc.open_file(f)
            for i in range(r.num_record_batches):
                b = r.get_batch(i)
                use_columns([b.column(b.schema.get_field_index(c)) for c in SCAN_COLS])
    return run


def ipc_lookup(path, k):
    def run():
        with pa.memory_map(path) as f:
            r = ipc.open_file(f)
            return use_row(r.get_batch(k % r.num_record_batches), k)
    return run


def pq_scan(path):
    def run():
        t = pq.read_table(path, columns=SCAN_COLS, memory_map=True, use_threads=False)
        for b in t.to_batches():
            use_columns([b.column(b.schema.get_field_index(c)) for c in SCAN_COLS])
    return run


def pq_lookup(path, k):
    def run():
        f = pq.ParquetFile(path, memory_map=True)
        return use_row(f.read_row_group(k % f.num_row_groups, use_threads=False), k)
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", help="an Arrow IPC file of lineitem rows [default: the harness cache's]")
    p.add_argument("--rows", type=int, default=6_000_000, help="rows to use (default 6,000,000: SF 1)")
    p.add_argument("--repeat", type=int, default=7, help="timed repetitions (median)")
    a = p.parse_args()
    src = a.source or next(iter(sorted(glob.glob(os.path.expanduser(
        "~/.cache/strata-bench/tpch-sf*/lineitem.arrow")))), None)
    if not src:
        raise SystemExit("no lineitem.arrow: run the harness once (benches/harness/run.py) or pass --source")
    t = source_rows(src, a.rows)
    print(f"{t.num_rows} rows x {t.num_columns} columns of {src}; batches of {BATCH} rows; "
          f"pyarrow {pa.__version__}; median of {a.repeat}")
    with tempfile.TemporaryDirectory() as d:
        variants = [
            ("Arrow IPC, uncompressed (Strata today)", f"{d}/u.arrow", lambda p: write_ipc(t, p), ipc_scan, ipc_lookup),
            ("Arrow IPC, LZ4 frame", f"{d}/l.arrow", lambda p: write_ipc(t, p, "lz4"), ipc_scan, ipc_lookup),
            ("Parquet, uncompressed", f"{d}/u.parquet", lambda p: write_parquet(t, p, "none"), pq_scan, pq_lookup),
            ("Parquet, snappy", f"{d}/s.parquet", lambda p: write_parquet(t, p, "snappy"), pq_scan, pq_lookup),
            ("Parquet, zstd", f"{d}/z.parquet", lambda p: write_parquet(t, p, "zstd"), pq_scan, pq_lookup),
            # What a reader that decodes one page per column (a page index and
            # row selection) could approach: row groups of 8,192 rows.
            ("Parquet, zstd, 8,192-row groups", f"{d}/z8.parquet", lambda p: write_parquet(t, p, "zstd", 8192),
             pq_scan, pq_lookup),
        ]
        rows = []
        for label, path, write, scan, lookup in variants:
            write(path)
            size = os.path.getsize(path)
            s = timed(scan(path), a.repeat)
            l = timed(lookup(path, 37), a.repeat * 5)
            rows.append((label, size, s, l))
            print(f"  {label}: {size / 2**20:.0f} MiB, scan {s * 1000:.1f} ms, lookup {l * 1e6:.0f} µs", flush=True)
    base = rows[0]
    print()
    print("| format | file MiB | scan 4 columns ms | one batch µs | scan / IPC | batch / IPC |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, size, s, l in rows:
        print(f"| {label} | {size / 2**20:.0f} | {s * 1000:.1f} | {l * 1e6:.0f} | {s / base[2]:.2f} | {l / base[3]:.2f} |")


if __name__ == "__main__":
    main()
