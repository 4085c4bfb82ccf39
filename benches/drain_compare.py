#!/usr/bin/env python3
"""Compare our Drain log-template miner with drain3 on the labelled Loghub-2k systems.

For every system: grouping accuracy (GA, Zhu et al., ICSE 2019) and parsing throughput
of drain3 (default config, and the masking config of drain3's own examples/drain3.ini)
and of ours, fed the same WHOLE raw lines (no header stripping). Then throughput on the
systems' 16,000 lines as one file, and on those repeated to --big-lines lines.

Ours runs as a subprocess: `--bin "CMD ARGS"` is a command that, given one more
argument (a file), writes one `<group id>\\t<template>` line per input line, like
`investigator logs templates <file>`. If it also writes `parse_seconds=<float>` on
stderr, that is used as its parse time (mining lines already decoded and split in
memory, as drain3's `add_log_message` loop is timed; not reading, splitting or writing); the
wall time of the whole process (start-up, reading, writing and our reading of its output
included) is reported beside it. drain3 is timed around `add_log_message` only.

Both sides are timed the same way: drain3 as the fastest of --repeat fresh miners in one
Python process, ours as the fastest of --repeat fresh miners in one process (our CLI's
`--repeat N`, see --in-process-flag). The first run of a fresh process of ours (cold
caches, fresh memory, its helper thread starting) is reported beside it, fastest of
--repeat processes.

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


def run_drain3(lines, variant, repeat=1):
    """Cluster ids of a fresh miner, and the fastest of `repeat` timed runs."""
    best = None
    ids = None
    for _ in range(repeat):
        miner = drain3_miner(variant)
        add = miner.add_log_message
        start = time.perf_counter()
        ids = [add(line)["cluster_id"] for line in lines]
        secs = time.perf_counter() - start
        best = secs if best is None else min(best, secs)
    return ids, best


DRAIN3_PROCESS = r"""
import sys
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
config = TemplateMinerConfig()
config.profiling_enabled = False
miner = TemplateMiner(config=config)
with open(sys.argv[1], "rb") as f:
    data = f.read()
if data.endswith(b"\n"):
    data = data[:-1]
out = []
for raw in data.split(b"\n") if data else []:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    r = miner.add_log_message(raw.decode("utf-8", errors="replace"))
    out.append(f"{r['cluster_id']}\t{r['template_mined']}\n")
sys.stdout.write("".join(out))
"""


def run_drain3_process(path, expected_lines, repeat=1):
    """Wall time of a whole Python process mining the file with drain3's default config and
    writing one line per input line: the counterpart of our CLI's wall time."""
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", DRAIN3_PROCESS, path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        out = proc.stdout.decode("utf-8", errors="replace").split("\n")
        secs = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"drain3 process failed: {proc.stderr.decode(errors='replace')[:2000]}")
        if out and out[-1] == "":
            out.pop()
        if len(out) != expected_lines:
            sys.exit(f"drain3 process: {len(out)} output lines for {expected_lines} input lines")
        best = secs if best is None else min(best, secs)
    return best


PARSE_SECONDS = re.compile(r"(?<![\w])parse_seconds=([0-9.eE+-]+)")


def run_ours(bin_cmd, path, expected_lines, repeat=1):
    """Group ids, and the fastest parse and wall times of `repeat` runs."""
    runs = [run_ours_once(bin_cmd, path, expected_lines) for _ in range(repeat)]
    parses = [p for _, p, _ in runs if p is not None]
    return runs[0][0], (min(parses) if parses else None), min(w for _, _, w in runs)


def run_ours_in_process(bin_cmd, flag, path, expected_lines, runs):
    """Our fastest parse of `runs` fresh miners in one process, as drain3 is timed; None
    without the flag."""
    if not flag:
        return None
    _, parse, _ = run_ours_once(f"{bin_cmd} {flag} {runs}", path, expected_lines)
    return parse


def run_ours_once(bin_cmd, path, expected_lines):
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


def ratio(theirs, ours):
    return "n/a" if not ours or ours != ours else f"{theirs / ours:.1f}"


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
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per system and parser (fastest kept)")
    ap.add_argument("--in-process-flag", default="--repeat",
                    help="our flag taking N: mine the file N times in one process, fastest parse "
                         "reported ('' to time only first runs of fresh processes)")
    ap.add_argument("--single-thread-flag", default="--single-thread",
                    help="flag appended to --bin for a one-thread run beside the default ('' to skip)")
    args = ap.parse_args()

    import drain3  # noqa: F401  (fail early with the import error)
    from importlib.metadata import version

    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    print(f"drain3 {version('drain3')}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({cpu}), ours: {args.bin}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine slows both sides)")
    print()
    single_bin = f"{args.bin} {args.single_thread_flag}" if args.single_thread_flag else None
    header = ("| system | GA drain3 default | GA drain3 ini-masking | GA ours "
              "| lines/s drain3 default | lines/s drain3 ini | lines/s ours (parse) | lines/s ours (wall) "
              "| ours (parse) × drain3 default | ours first run of a process (parse) × drain3 default "
              "| ours one thread (parse) × drain3 default "
              "| ours (wall) × drain3 process (wall) |")
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    all_lines = []
    sums = defaultdict(float)
    totals = defaultdict(float)
    for name in SYSTEMS:
        log = os.path.join(args.data, name, f"{name}_2k.log")
        lines = read_lines(log)
        truth = read_labels(os.path.join(args.data, name, f"{name}_2k.log_structured.csv"))
        all_lines.extend(lines)
        d_ids, d_s = run_drain3(lines, "default", args.repeat)
        i_ids, i_s = run_drain3(lines, "ini", args.repeat)
        o_ids, o_first, o_wall = run_ours(args.bin, log, len(lines), args.repeat)
        o_parse = run_ours_in_process(args.bin, args.in_process_flag, log, len(lines), args.repeat) or o_first
        s_parse = None
        if single_bin:
            s_ids, s_first, _ = run_ours(single_bin, log, len(lines), args.repeat)
            if s_ids != o_ids:
                sys.exit(f"{name}: one thread and the helper thread gave different groups")
            s_parse = run_ours_in_process(single_bin, args.in_process_flag, log, len(lines), args.repeat) or s_first
        p_wall = run_drain3_process(log, len(lines), args.repeat)
        totals["sp"] += s_parse if s_parse is not None else float("nan")
        totals["pw"] += p_wall
        ga = (grouping_accuracy(d_ids, truth), grouping_accuracy(i_ids, truth), grouping_accuracy(o_ids, truth))
        for key, value in zip(("d", "i", "o"), ga):
            sums[key] += value
        totals["n"] += len(lines)
        totals["d"] += d_s
        totals["i"] += i_s
        totals["op"] += o_parse if o_parse is not None else float("nan")
        totals["of"] += o_first if o_first is not None else float("nan")
        totals["ow"] += o_wall
        print(f"| {name} | {ga[0]:.4f} | {ga[1]:.4f} | {ga[2]:.4f} | {fmt_rate(rate(len(lines), d_s))} "
              f"| {fmt_rate(rate(len(lines), i_s))} "
              f"| {fmt_rate(None if o_parse is None else rate(len(lines), o_parse))} "
              f"| {fmt_rate(rate(len(lines), o_wall))} | {ratio(d_s, o_parse)} | {ratio(d_s, o_first)} "
              f"| {ratio(d_s, s_parse)} "
              f"| {ratio(p_wall, o_wall)} |")
    k = len(SYSTEMS)
    n = totals["n"]
    op = None if totals["op"] != totals["op"] else rate(n, totals["op"])
    print(f"| **average** | **{sums['d'] / k:.4f}** | **{sums['i'] / k:.4f}** | **{sums['o'] / k:.4f}** "
          f"| {fmt_rate(rate(n, totals['d']))} | {fmt_rate(rate(n, totals['i']))} | {fmt_rate(op)} "
          f"| {fmt_rate(rate(n, totals['ow']))} | {ratio(totals['d'], None if op is None else totals['op'])} "
          f"| {ratio(totals['d'], None if totals['of'] != totals['of'] else totals['of'])} "
          f"| {ratio(totals['d'], None if totals['sp'] != totals['sp'] else totals['sp'])} "
          f"| {ratio(totals['pw'], totals['ow'])} |")
    print()
    print(f"Per-system throughput: 2,000 lines each, fastest of {args.repeat} runs (ours (parse): fresh miners in")
    print("one process, as drain3; first run of a process: fastest of as many processes); ours (wall) is a whole")
    print("process per file (start-up, reading, writing), so it mostly measures start-up here; its")
    print("counterpart is drain3 (default config) run as a whole Python process on the file.")

    # Whole-input throughput: the 8 x 2,000 lines as one mixed stream, and that stream
    # repeated to --big-lines lines (many groups alive at once, like a real log).
    inputs = [("8 systems x 2,000 lines, one file", all_lines, args.repeat)]
    if args.big_lines > 0:
        big = (all_lines * (args.big_lines // len(all_lines) + 1))[: args.big_lines]
        inputs.append((f"the same repeated to {len(big):,} lines", big, 1))
    print()
    print("| input | parser | seconds | lines/s | ours (parse) × faster | ours (wall) × faster |")
    print("|---|---|---:|---:|---:|---:|")
    for title, lines, repeat in inputs:
        path = write_lines(lines)
        try:
            _, o_first, o_wall = run_ours(args.bin, path, len(lines), repeat)
            o_parse = run_ours_in_process(args.bin, args.in_process_flag, path, len(lines), repeat) or o_first
            rows = []
            single = run_ours(single_bin, path, len(lines), repeat) if single_bin else None
            s_parse = None
            if single_bin:
                s_parse = run_ours_in_process(single_bin, args.in_process_flag, path, len(lines), repeat) or single[1]
            for variant, label in (("default", "drain3 default"), ("ini", "drain3 ini-masking")):
                _, secs = run_drain3(lines, variant, repeat)
                rows.append((label, secs))
            rows.append(("drain3 default, whole process (wall)", run_drain3_process(path, len(lines), repeat)))
            rows.append(("ours (parse)", o_parse))
            if repeat > 1 and args.in_process_flag:
                rows.append(("ours, first run of a process (parse)", o_first))
            if single is not None:
                rows.append(("ours, one thread (parse)", s_parse))
                rows.append(("ours, one thread (wall)", single[2]))
            rows.append(("ours (wall: start-up, read, parse, write, pipe)", o_wall))
            for label, secs in rows:
                if secs is None:
                    print(f"| {title} | {label} | n/a | n/a | | |")
                    continue
                ours = label.startswith("ours")
                ratio_parse = f"{secs / o_parse:.1f}" if o_parse and not ours else ""
                ratio_wall = f"{secs / o_wall:.1f}" if not ours else ""
                print(f"| {title} | {label} | {secs:.3f} | {rate(len(lines), secs):,.0f} | {ratio_parse} | {ratio_wall} |")
        finally:
            os.unlink(path)
    print()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
