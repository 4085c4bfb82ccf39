#!/usr/bin/env python3
"""Compare our Drain log-template miner with drain3 on the labelled Loghub-2k systems.

For every system: grouping accuracy (GA, Zhu et al., ICSE 2019) and parsing throughput
of drain3 (default config, and the masking config of drain3's own examples/drain3.ini)
and of ours, fed the same WHOLE raw lines (no header stripping). Then throughput on a
large input: the systems' lines concatenated and repeated to --big-lines lines.

Ours runs as a subprocess: `--bin "CMD ARGS"` is a command that, given one more
argument (a file), writes one `<group id>\\t<template>` line per input line, like
`investigator logs templates <file>`. If it also writes `parse_seconds=<float>` on
stderr, that is used as its parse time (file reading and output excluded, as for
drain3, whose lines are in memory); the wall time of the whole process (start-up,
reading, writing and our reading of its output included) is reported beside it.

Prints the tables to stdout and writes nothing else (temporary input files are removed).

    pip install drain3==0.9.11
    python3 benches/drain_compare.py --bin "/path/to/investigator logs templates"
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict

SYSTEMS = ["HDFS", "Hadoop", "Spark", "Zookeeper", "BGL", "HPC", "Thunderbird", "OpenStack"]

# drain3's examples/drain3.ini (drain3 0.9.11): its documented typical masking and DRAIN
# section. `max_clusters = 1024` is kept as documented (it never binds on 2k lines).
DRAIN3_INI_MASKING = [
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
    (r"(?<=executed cmd )(\".+?\")", "CMD"),
]


def read_lines(path):
    """Lines as the Rust side sees them: split on \\n, trailing \\r dropped, no final empty line."""
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n"):
        data = data[:-1]
    out = []
    for raw in data.split(b"\n"):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        out.append(raw.decode("utf-8", errors="replace"))
    return out


def read_labels(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [row["EventId"] for row in csv.DictReader(f)]


def grouping_accuracy(predicted, truth):
    """A line counts iff its predicted group holds exactly the lines of its true event."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} labels")
    truth_size = Counter(truth)
    members = defaultdict(list)
    for i, group in enumerate(predicted):
        members[group].append(i)
    correct = 0
    for idx in members.values():
        events = {truth[i] for i in idx}
        if len(events) == 1 and truth_size[next(iter(events))] == len(idx):
            correct += len(idx)
    return correct / len(truth)


def drain3_miner(variant):
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()  # not .load(): keeps a stray drain3.ini in cwd out of it
    config.profiling_enabled = False
    if variant == "ini":
        config.masking_instructions = [MaskingInstruction(p, m) for p, m in DRAIN3_INI_MASKING]
        config.mask_prefix = "<:"
        config.mask_suffix = ":>"
        config.drain_sim_th = 0.4
        config.drain_depth = 4
        config.drain_max_children = 100
        config.drain_max_clusters = 1024
        config.drain_extra_delimiters = ["_"]
    return TemplateMiner(config=config)


def run_drain3(lines, variant):
    miner = drain3_miner(variant)
    add = miner.add_log_message
    start = time.perf_counter()
    ids = [add(line)["cluster_id"] for line in lines]
    return ids, time.perf_counter() - start


PARSE_SECONDS = re.compile(r"parse_seconds=([0-9.eE+-]+)")


def run_ours(bin_cmd, path, expected_lines):
    cmd = shlex.split(bin_cmd) + [path]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    out = proc.stdout.decode("utf-8", errors="replace").split("\n")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:2000]}")
    if out and out[-1] == "":
        out.pop()
    ids = [line.split("\t", 1)[0] for line in out]
    if len(ids) != expected_lines:
        sys.exit(f"{cmd}: {len(ids)} output lines for {expected_lines} input lines")
    m = PARSE_SECONDS.search(proc.stderr.decode("utf-8", errors="replace"))
    parse = float(m.group(1)) if m else None
    return ids, parse, wall


def rate(n, seconds):
    return n / seconds if seconds and seconds > 0 else float("inf")


def fmt_rate(r):
    return "n/a" if r is None else f"{r:,.0f}"


def write_lines(lines):
    fd, path = tempfile.mkstemp(prefix="drain_compare_", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
    return path


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help='command taking one more argument, a file: "/path/investigator logs templates"')
    ap.add_argument("--data", default=os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "loghub-2k")))
    ap.add_argument("--big-lines", type=int, default=1_000_000, help="lines of the large input (0: skip)")
    args = ap.parse_args()

    import drain3  # noqa: F401  (fail early with the import error)
    from importlib.metadata import version

    print(f"drain3 {version('drain3')}, Python {sys.version.split()[0]}, ours: {args.bin}")
    print()
    header = ("| system | GA drain3 default | GA drain3 ini-masking | GA ours "
              "| lines/s drain3 default | lines/s drain3 ini | lines/s ours (parse) | lines/s ours (wall) |")
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    all_lines = []
    sums = defaultdict(float)
    totals = defaultdict(float)
    for name in SYSTEMS:
        log = os.path.join(args.data, name, f"{name}_2k.log")
        lines = read_lines(log)
        truth = read_labels(os.path.join(args.data, name, f"{name}_2k.log_structured.csv"))
        all_lines.extend(lines)
        d_ids, d_s = run_drain3(lines, "default")
        i_ids, i_s = run_drain3(lines, "ini")
        o_ids, o_parse, o_wall = run_ours(args.bin, log, len(lines))
        ga = (grouping_accuracy(d_ids, truth), grouping_accuracy(i_ids, truth), grouping_accuracy(o_ids, truth))
        for key, value in zip(("d", "i", "o"), ga):
            sums[key] += value
        totals["n"] += len(lines)
        totals["d"] += d_s
        totals["i"] += i_s
        totals["op"] += o_parse if o_parse is not None else float("nan")
        totals["ow"] += o_wall
        print(f"| {name} | {ga[0]:.4f} | {ga[1]:.4f} | {ga[2]:.4f} | {fmt_rate(rate(len(lines), d_s))} "
              f"| {fmt_rate(rate(len(lines), i_s))} "
              f"| {fmt_rate(None if o_parse is None else rate(len(lines), o_parse))} "
              f"| {fmt_rate(rate(len(lines), o_wall))} |")
    k = len(SYSTEMS)
    n = totals["n"]
    op = None if totals["op"] != totals["op"] else rate(n, totals["op"])
    print(f"| **average** | **{sums['d'] / k:.4f}** | **{sums['i'] / k:.4f}** | **{sums['o'] / k:.4f}** "
          f"| {fmt_rate(rate(n, totals['d']))} | {fmt_rate(rate(n, totals['i']))} | {fmt_rate(op)} "
          f"| {fmt_rate(rate(n, totals['ow']))} |")
    print()
    print("Throughput rows of the per-system table are over 2,000 lines each (ours: per-process; tiny inputs).")

    if args.big_lines <= 0:
        return
    # The mixed stream of all systems, repeated: many groups live at once, like a real log.
    big = (all_lines * (args.big_lines // len(all_lines) + 1))[: args.big_lines]
    path = write_lines(big)
    try:
        print()
        print(f"Large input: {len(all_lines):,} lines of the {k} systems repeated to {len(big):,} lines.")
        print()
        print("| parser | seconds | lines/s | ours (parse) is × faster |")
        print("|---|---:|---:|---:|")
        _, o_parse, o_wall = run_ours(args.bin, path, len(big))
        o_time = o_parse if o_parse is not None else o_wall
        rows = []
        for variant, label in (("default", "drain3 default"), ("ini", "drain3 ini-masking")):
            _, secs = run_drain3(big, variant)
            rows.append((label, secs))
        rows.append(("ours (parse)", o_parse))
        rows.append(("ours (wall: start-up, read, write, pipe)", o_wall))
        for label, secs in rows:
            if secs is None:
                print(f"| {label} | n/a | n/a | |")
                continue
            speed = f"{secs / o_time:.1f}" if not label.startswith("ours") else ""
            print(f"| {label} | {secs:.2f} | {rate(len(big), secs):,.0f} | {speed} |")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
