#!/usr/bin/env python3
"""Turns the raw measurements of one bench/run.sh run into the table and a JSON file.

    report.py RAW_DIR JSON_OUT [DEFAULT_CACHE_MODE]

RAW_DIR holds vm/ (from vm-bench.sh) and native/ (from passthrough.sh). Prints the table
(markdown) on stdout. All comparisons are within this one run, as ratios.
"""
import glob
import json
import os
import re
import statistics
import sys

raw, json_out = sys.argv[1], sys.argv[2]
default_mode = sys.argv[3] if len(sys.argv) > 3 else "writeback"
vm = os.path.join(raw, "vm")
# What the second build (QEMU_LIO_ALT) is: run.sh sets it, e.g. "the old link (static-cxx)".
ALT_LABEL = os.environ.get("BENCH_ALT_LABEL") or "static C++ runtime (experiment)"
nat = os.path.join(raw, "native")
R = {"targets": [], "control_plane": {}, "targetcli": {}, "passthrough": {}, "rss": {},
     "data_plane": {}, "nested": {}, "cpu_per_io": {}, "machine": {}}
out = []


def p(s=""):
    out.append(s)


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [[float(x) for x in line.split()] for line in f if line.strip()]


def col(path, i):
    return [r[i] for r in rows(path)]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def ms(ns):
    return ns / 1e6


def fmt_ms(x):
    if x != x:
        return "n/a"
    if x >= 1000:
        return f"{x / 1000:.1f} s"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def stat3(xs):
    """median, min, max in ms, from ns."""
    if not xs:
        return None
    return {"median_ms": ms(med(xs)), "min_ms": ms(min(xs)), "max_ms": ms(max(xs)), "n": len(xs)}


def s3(st):
    if not st:
        return "n/a"
    return f"{fmt_ms(st['median_ms'])} ({fmt_ms(st['min_ms'])}-{fmt_ms(st['max_ms'])})"


def target(name, value, limit, ok, note=""):
    R["targets"].append({"target": name, "value": value, "limit": limit, "met": ok, "note": note})


# ---- machine ---------------------------------------------------------------------------
info = {}
for path in (os.path.join(vm, "vm-info.txt"),):
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.strip().partition(" ")
            info[k] = v
if os.path.exists(os.path.join(nat, "host-info.txt")):
    for line in open(os.path.join(nat, "host-info.txt")):
        k, _, v = line.strip().partition(" ")
        info["host_" + k] = v
if os.path.exists(os.path.join(nat, "qemu-version.txt")):
    info["qemu"] = open(os.path.join(nat, "qemu-version.txt")).read().strip()
R["machine"] = info

# ---- control plane ---------------------------------------------------------------------
ns_list = sorted({int(re.search(r"-(\d+)\.txt$", f).group(1))
                  for f in glob.glob(os.path.join(vm, "cp-floor-*.txt"))})
cp = R["control_plane"]
if ns_list:
    p("### Control plane (in the VM, TCG): provisioning and teardown, ms, median (min-max)")
    p()
    p("| disks | tool | reps | provision | teardown | provision/disk | teardown/disk | vs floor (prov / tear) "
      "| vs parallel floor (prov / tear) |")
    p("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in ns_list:
    base_up = med(col(f"{vm}/cp-baseline-{n}.txt", 0))
    base_down = med(col(f"{vm}/cp-baseline-{n}.txt", 1))
    q = rows(f"{vm}/cp-qemu-lio-{n}.txt")
    q_up = [r[0] - base_up for r in q]
    q_down = [r[1] - base_down for r in q]
    f_up = col(f"{vm}/cp-floor-{n}.txt", 1)
    f_down = col(f"{vm}/cp-floor-{n}.txt", 2)
    # The parallel floor (bench-floor --threads 16): the same syscalls from qemu-lio's pool.
    fp_up = col(f"{vm}/cp-floor-par-{n}.txt", 1)
    fp_down = col(f"{vm}/cp-floor-par-{n}.txt", 2)
    qa = rows(f"{vm}/cp-qemu-lio-alt-{n}.txt")
    qa_up = [r[0] - base_up for r in qa]
    qa_down = [r[1] - base_down for r in qa]
    s_up = col(f"{vm}/cp-seed-up-{n}.txt", 2)
    s_down = col(f"{vm}/cp-seed-down-{n}.txt", 2)
    entry = {
        "spawn_baseline": {"up_ms": ms(base_up), "down_ms": ms(base_down)},
        "qemu_lio": {"provision": stat3(q_up), "teardown": stat3(q_down),
                     "utime_ms": med([r[4] for r in q]) / 1e3 if q else None,
                     "stime_ms": med([r[5] for r in q]) / 1e3 if q else None,
                     "maxrss_kb": max([r[6] for r in q]) if q else None},
        "floor": {"provision": stat3(f_up), "teardown": stat3(f_down)},
        "floor_parallel": {"provision": stat3(fp_up), "teardown": stat3(fp_down)},
        "seed_script": {"provision": stat3(s_up), "teardown": stat3(s_down)},
    }
    if qa:
        entry["qemu_lio_static_experiment"] = {"provision": stat3(qa_up), "teardown": stat3(qa_down)}
    fu, fd = med(f_up), med(f_down)
    entry["ratio_qemu_lio_floor"] = {"provision": med(q_up) / fu, "teardown": med(q_down) / fd}
    entry["ratio_seed_floor"] = {"provision": med(s_up) / fu, "teardown": med(s_down) / fd}
    fpu, fpd = med(fp_up), med(fp_down)
    if fp_up:
        entry["ratio_qemu_lio_floor_parallel"] = {"provision": med(q_up) / fpu, "teardown": med(q_down) / fpd}
        entry["ratio_floor_parallel_floor"] = {"provision": fpu / fu, "teardown": fpd / fd}
    cp[str(n)] = entry
    arms = [("qemu-lio", "qemu_lio", q_up, q_down)]
    if qa:
        arms.append((f"qemu-lio, {ALT_LABEL}", "qemu_lio_static_experiment", qa_up, qa_down))
    arms += [("floor", "floor", f_up, f_down)]
    if fp_up:
        arms += [("floor, parallel (16 threads)", "floor_parallel", fp_up, fp_down)]
    arms += [("seed script (sh)", "seed_script", s_up, s_down)]
    for label, key, up, down in arms:
        st = entry[key]
        ratio = ratio_par = ""
        if key != "floor":
            ratio = f"{med(up) / fu:.2f}x / {med(down) / fd:.2f}x"
        if fp_up and key != "floor_parallel":
            ratio_par = f"{med(up) / fpu:.2f}x / {med(down) / fpd:.2f}x"
        p(f"| {n} | {label} | {len(up)} | {s3(st['provision'])} | {s3(st['teardown'])} | "
          f"{fmt_ms(ms(med(up)) / n)} | {fmt_ms(ms(med(down)) / n)} | {ratio} | {ratio_par} |")

# targetcli
tc = rows(f"{vm}/tcli.txt")
tcn = sorted({int(r[0]) for r in tc})
for n in tcn:
    rs = [r for r in tc if int(r[0]) == n]
    up = [r[1] for r in rs]
    down = [r[2] for r in rs]
    e = {"provision": stat3(up), "teardown": stat3(down), "reps": len(rs),
         "commands_up": int(rs[0][3]), "commands_down": int(rs[0][4])}
    R["targetcli"][str(n)] = e
    ratio = ""
    if str(n) in cp:
        qp = cp[str(n)]["qemu_lio"]["provision"]["median_ms"]
        qt = cp[str(n)]["qemu_lio"]["teardown"]["median_ms"]
        e["ratio_targetcli_qemu_lio"] = {"provision": ms(med(up)) / qp, "teardown": ms(med(down)) / qt,
                                         "total": ms(med(up) + med(down)) / (qp + qt)}
        ratio = (f"targetcli/qemu-lio {e['ratio_targetcli_qemu_lio']['provision']:.0f}x / "
                 f"{e['ratio_targetcli_qemu_lio']['teardown']:.0f}x")
    p(f"| {n} | targetcli ({e['commands_up']}+{e['commands_down']} commands) | {len(rs)} | "
      f"{s3(e['provision'])} | {s3(e['teardown'])} | {fmt_ms(ms(med(up)) / n)} | "
      f"{fmt_ms(ms(med(down)) / n)} | {ratio} | |")
if ns_list:
    p()
    extra = []
    b0 = rows(f"{vm}/cp-baseline-0.txt")
    q0 = rows(f"{vm}/cp-qemu-lio-0.txt")
    if b0 and q0:
        fixed_up = med([r[0] for r in q0]) - med([r[0] for r in b0])
        fixed_down = med([r[1] for r in q0]) - med([r[1] for r in b0])
        ver = med(col(f"{vm}/cp-version.txt", 2)) - med(col(f"{vm}/cp-standin-total.txt", 2))
        cp["qemu_lio_fixed"] = {"no_disk_provision_ms": ms(fixed_up), "no_disk_teardown_ms": ms(fixed_down),
                                "version_run_ms": ms(ver)}
        extra.append(f"qemu-lio with no disk adds {fmt_ms(ms(fixed_up))} ms before QEMU and "
                     f"{fmt_ms(ms(fixed_down))} ms after it; `qemu-lio --version` costs "
                     f"{fmt_ms(ms(ver))} ms more than exec of a static no-op")
        qa0 = rows(f"{vm}/cp-qemu-lio-alt-0.txt")
        if qa0:
            fa = med([r[0] for r in qa0]) - med([r[0] for r in b0])
            va = med(col(f"{vm}/cp-version-alt.txt", 2)) - med(col(f"{vm}/cp-standin-total.txt", 2))
            cp["qemu_lio_static_experiment_fixed"] = {"no_disk_provision_ms": ms(fa), "version_run_ms": ms(va)}
            extra.append(f"{ALT_LABEL}: no disk adds {fmt_ms(ms(fa))} ms before QEMU; "
                         f"`--version` costs {fmt_ms(ms(va))} ms more than the static no-op")
    if "1" in cp:
        b = cp["1"]["spawn_baseline"]
        extra.append(f"baseline subtracted from qemu-lio: fork+exec+start of a static stand-in "
                     f"{fmt_ms(b['up_ms'])} ms, its exit+reap {fmt_ms(b['down_ms'])} ms")
    for n in ns_list:
        e = cp[str(n)]["qemu_lio"]
        if e["utime_ms"] is not None:
            extra.append(f"qemu-lio CPU at {n} disks: user {fmt_ms(e['utime_ms'])} ms, "
                         f"sys {fmt_ms(e['stime_ms'])} ms (median, wait4)")
    if 1 in ns_list:
        for n in ns_list:
            if n == 1:
                continue
            mq = (cp[str(n)]["qemu_lio"]["provision"]["median_ms"] - cp["1"]["qemu_lio"]["provision"]["median_ms"]) / (n - 1)
            mf = (cp[str(n)]["floor"]["provision"]["median_ms"] - cp["1"]["floor"]["provision"]["median_ms"]) / (n - 1)
            cp[str(n)]["marginal_provision_per_disk_ms"] = {"qemu_lio": mq, "floor": mf}
            extra.append(f"marginal provisioning cost per extra disk, 1 -> {n} disks: qemu-lio {fmt_ms(mq)} ms, "
                         f"floor {fmt_ms(mf)} ms ({mq / mf:.2f}x)")
    if "clock_gettime_ns" in info:
        extra.append(f"in this VM one clock_gettime(CLOCK_MONOTONIC) costs {info['clock_gettime_ns']} ns "
                     f"(clocksource {info.get('clocksource', '?')})")
    tvc = os.path.join(vm, "tcli-vhost-create.txt")
    if os.path.exists(tvc):
        extra.append("targetcli `/vhost create` made by itself: " + open(tvc).read().strip())
    for x in extra:
        p(f"- {x}")
    p()

# control-plane targets
for n in ns_list:
    e = cp[str(n)]
    r = e["ratio_qemu_lio_floor"]
    target(f"provision <= 1.5x floor, {n} disk(s)", round(r["provision"], 2), 1.5, r["provision"] <= 1.5,
           "start to QEMU's exec" if n == 1 else "")
    target(f"teardown <= 1.2x floor, {n} disk(s)", round(r["teardown"], 2), 1.2, r["teardown"] <= 1.2)
# Issue 15: parallel disks beat the serial floor (ratios to the serial floor, this run).
for n, k, limit in ((8, "teardown", 0.4), (64, "teardown", 0.3), (8, "provision", 0.5)):
    if str(n) in cp:
        e = cp[str(n)]
        r = e["ratio_qemu_lio_floor"][k]
        par = e.get("ratio_floor_parallel_floor", {}).get(k)
        target(f"{k} of {n} disks <= {limit}x the serial floor (parallel disks)", round(r, 2), limit,
               r <= limit, f"the parallel floor itself: {par:.2f}x" if par else "")
if "1" in cp:
    one = cp["1"]["qemu_lio"]
    for n in ns_list:
        if n == 1:
            continue
        e = cp[str(n)]["qemu_lio"]
        for k in ("provision", "teardown"):
            grow = (e[k]["median_ms"] / n) / one[k]["median_ms"]
            target(f"{k} per disk flat, {n} vs 1 disk (±20%)", round(grow, 2), 1.2, grow <= 1.2,
                   "per-disk cost at N / cost of 1 disk")
for n, e in R["targetcli"].items():
    if "ratio_targetcli_qemu_lio" in e:
        t = e["ratio_targetcli_qemu_lio"]["total"]
        target(f">= 100x faster than targetcli per disk, {n} disk(s)", round(t, 1), 100, t >= 100,
               "provision+teardown" + (", 1 repetition" if e["reps"] == 1 else ""))

# ---- pass-through and RSS --------------------------------------------------------------
loop = os.path.join(nat, "passthrough-loop.txt")
if os.path.exists(loop):
    d = {"real": [], "dropin": [], "dropin-alt": []}
    for line in open(loop):
        k, v = line.split()
        d[k].append(float(v))
    add = med(d["dropin"]) - med(d["real"])
    R["passthrough"] = {"runs": len(d["real"]), "real_median_ms": ms(med(d["real"])),
                        "dropin_median_ms": ms(med(d["dropin"])), "added_median_ms": ms(add)}
    p("### Pass-through (native): `qemu-system-x86_64 -version`")
    p()
    p("| how | runs | real QEMU | through the drop-in symlink | added |")
    p("| --- | ---: | ---: | ---: | ---: |")
    p(f"| interleaved loop (bench-spawn), median | {len(d['real'])} | {fmt_ms(ms(med(d['real'])))} ms | "
      f"{fmt_ms(ms(med(d['dropin'])))} ms | {fmt_ms(ms(add))} ms |")
    if d["dropin-alt"]:
        add_alt = med(d["dropin-alt"]) - med(d["real"])
        R["passthrough"]["dropin_static_experiment_median_ms"] = ms(med(d["dropin-alt"]))
        R["passthrough"]["added_static_experiment_median_ms"] = ms(add_alt)
        p(f"| same, drop-in built as {ALT_LABEL} | {len(d['dropin-alt'])} | "
          f"{fmt_ms(ms(med(d['real'])))} ms | {fmt_ms(ms(med(d['dropin-alt'])))} ms | {fmt_ms(ms(add_alt))} ms |")
    hf = os.path.join(nat, "passthrough-hyperfine.json")
    if os.path.exists(hf):
        j = {r["command"]: r for r in json.load(open(hf))["results"]}
        if "real" in j and "dropin" in j:
            a = (j["dropin"]["mean"] - j["real"]["mean"]) * 1e3
            R["passthrough"]["hyperfine"] = {"real_mean_ms": j["real"]["mean"] * 1e3,
                                             "dropin_mean_ms": j["dropin"]["mean"] * 1e3,
                                             "real_stddev_ms": j["real"]["stddev"] * 1e3,
                                             "dropin_stddev_ms": j["dropin"]["stddev"] * 1e3,
                                             "added_mean_ms": a}
            p(f"| hyperfine -N, mean ± σ | {len(j['real']['times'])} | "
              f"{j['real']['mean'] * 1e3:.2f} ± {j['real']['stddev'] * 1e3:.2f} ms | "
              f"{j['dropin']['mean'] * 1e3:.2f} ± {j['dropin']['stddev'] * 1e3:.2f} ms | {a:.2f} ms |")
    p()
    target("pass-through adds < 2 ms to -version", round(ms(add), 2), 2, ms(add) < 2,
           "median of the interleaved loop")
rss = []
for path, where in ((os.path.join(nat, "rss-native.txt"), "native, no disk"),
                    (os.path.join(vm, "rss-vm.txt"), "in the VM")):
    for r in rows(path):
        rss.append({"where": where, "disks": int(r[0]), "vmhwm_kb": int(r[1]), "vmrss_kb": int(r[2])})
if rss:
    R["rss"] = rss
    p("Peak RSS of the wrapper while it supervises a running stand-in QEMU: " + "; ".join(
        (f"{x['where']}" if x['disks'] == 0 else f"{x['where']}, {x['disks']} disk(s)") + f": VmHWM {x['vmhwm_kb'] / 1024:.1f} MiB" for x in rss))
    p()
    worst = max(x["vmhwm_kb"] for x in rss) / 1024
    target("wrapper peak RSS < 8 MiB while supervising", round(worst, 1), 8, worst < 8, "VmHWM, worst case")

# ---- data plane ------------------------------------------------------------------------
JOBS = [("rr4k-qd1", "4k randread qd1", "read"), ("rr4k-qd32", "4k randread qd32", "read"),
        ("rw4k-qd1", "4k randwrite qd1", "write"), ("rw4k-qd32", "4k randwrite qd32", "write"),
        ("sr1m", "1M seq read qd8", "read"), ("sw1m", "1M seq write qd8", "write")]
TARGETS = ["raw", "raw-buffered", "lio-writeback", "lio-writethrough", "lio-none", "qcow2-writeback", "qcow2-none"]
dp = R["data_plane"]
for t in TARGETS:
    for job, _, rw in JOBS:
        f = os.path.join(vm, f"fio-{t}-{job}.json")
        if not os.path.exists(f):
            continue
        try:
            j = json.load(open(f))["jobs"][0][rw]
        except (ValueError, KeyError, IndexError):
            continue
        dp.setdefault(t, {})[job] = {"iops": j["iops"], "mb_s": j["bw_bytes"] / 1e6,
                                     "clat_mean_us": j.get("clat_ns", {}).get("mean", 0) / 1e3}
if "raw" in dp:
    p("### Data plane (in the VM): fio on an ext4 image; LIO through tcm_loop as /dev/sdX")
    p()
    p("4k rows: IOPS; 1M rows: MB/s; in parentheses the ratio to `raw` (fio O_DIRECT on the image file). "
      "`raw-buffered` is fio on the same file without O_DIRECT (what LIO's writeback mode does "
      "underneath). Every LIO run is O_DIRECT on /dev/sdX. `qcow2-*` is a preallocated qcow2 image "
      "served by qemu-storage-daemon over NBD (/dev/nbdN) and iblock, in that cache mode.")
    p()
    hdr = [t for t in TARGETS if t in dp]
    p("| job | " + " | ".join(hdr) + " |")
    p("| --- | " + " | ".join("---:" for _ in hdr) + " |")
    for job, label, _ in JOBS:
        cells = []
        rawv = dp["raw"].get(job)
        for t in hdr:
            v = dp[t].get(job)
            if not v:
                cells.append("n/a")
                continue
            key = "mb_s" if job.endswith("1m") else "iops"
            c = f"{v[key]:.1f}" if key == "mb_s" else f"{v[key]:.0f}"
            if t != "raw" and rawv and rawv["iops"]:
                v["ratio_raw"] = v["iops"] / rawv["iops"]
                c += f" ({v['ratio_raw']:.2f})"
            cells.append(c)
        p(f"| {label} | " + " | ".join(cells) + " |")
    p()
    for t in hdr:
        f = os.path.join(vm, f"dp-{t}-info.txt")
        if t != "raw" and os.path.exists(f):
            txt = " ".join(open(f).read().split())
            m = re.search(r"Mode: (\S+).*?Async: (\d)", txt)
            wce = re.search(r"emulate_write_cache=(\d)", txt)
            if m:
                p(f"- {t}: LIO info `Mode: {m.group(1)} Async: {m.group(2)}`, "
                  f"emulate_write_cache={wce.group(1) if wce else '?'}")
    p()
    d = dp.get(f"lio-{default_mode}", {})
    for job, label, limit in (("sr1m", "1M seq read", 0.8), ("sw1m", "1M seq write", 0.8),
                              ("rr4k-qd32", "4k randread qd32", 0.5), ("rw4k-qd32", "4k randwrite qd32", 0.5)):
        if job in d and "ratio_raw" in d[job]:
            r = d[job]["ratio_raw"]
            target(f"data plane, default cache={default_mode}: {label} >= {int(limit * 100)}% of raw",
                   round(r, 2), limit, r >= limit)
    # Issue 12: the qcow2 path at 1M against the raw fileio path in the same cache mode.
    q, f = dp.get(f"qcow2-{default_mode}", {}), dp.get(f"lio-{default_mode}", {})
    for job, label in (("sr1m", "1M seq read"), ("sw1m", "1M seq write")):
        if job in q and job in f and f[job]["mb_s"]:
            r = q[job]["mb_s"] / f[job]["mb_s"]
            target(f"qcow2 served, cache={default_mode}: {label} >= 50% of the raw fileio path", round(r, 2), 0.5,
                   r >= 0.5)

# ---- nested ----------------------------------------------------------------------------
for kind in ("vhost-scsi", "virtio-blk"):
    f = os.path.join(vm, f"nested-{kind}.log")
    if os.path.exists(f):
        m = re.search(r"NESTED dev=(\S+) write_s=([\d.]+) read_s=([\d.]+)", open(f, errors="replace").read())
        if m:
            w, r = float(m.group(2)), float(m.group(3))
            R["nested"][kind] = {"dev": m.group(1), "write_mb_s": 128 / w if w else None,
                                 "read_mb_s": 128 / r if r else None}
p("### Nested guest (QEMU TCG inside the TCG VM): 128 MiB dd, O_DIRECT")
p()
if R["nested"]:
    p("| device | write MB/s | read MB/s |")
    p("| --- | ---: | ---: |")
    for kind, v in R["nested"].items():
        p(f"| {kind} ({v['dev']}) | {v['write_mb_s'] or 0:.1f} | {v['read_mb_s'] or 0:.1f} |")
    p()
    p("Caveat: under double TCG the emulated guest CPU is the bottleneck, so the two devices "
      "tie or nearly so; this row says nothing about vhost-scsi's speed on real hardware.")
else:
    p("Not run in this run (BENCH_PARTS without `nested`). Caveat if run: under double TCG the "
      "emulated guest CPU is the bottleneck, so vhost-scsi and virtio-blk tie.")
p()

# ---- cpu per I/O (issue 15) ------------------------------------------------------------
# bench-cpu-meter's windows (vm-bench.sh cpu_per_io) joined with the I/O counts the nested
# guest printed. All in the test VM's CPU time, which is TCG time.
#   busy     = CPUs x window - /proc/stat idle (NO_HZ idle time is clock-measured; the
#              tick-sampled busy fields lose ticks under TCG)
#   gross    = busy - the nested QEMU's vCPU thread
#   baseline = the same per second in the `busy` window (guest CPU spinning, no I/O), scaled
#              to the job's length: what a busy guest costs its host without any I/O
#   net      = gross - baseline, per I/O; also column by column (QEMU's non-vCPU threads,
#              the vhost worker, other kernel threads, everything else)
CPU_BACKENDS = {
    "vhost-wb": "vhost-scsi via qemu-lio, cache=writeback",
    "vhost-none": "vhost-scsi via qemu-lio, cache=none",
    "blk-threads": "virtio-blk, aio=threads, cache=writeback",
    "blk-io_uring": "virtio-blk, aio=io_uring, cache=writeback (EVE's setting)",
    "scsi-threads": "virtio-scsi, aio=threads, cache=writeback",
}
CPU_JOBS = {"rr4k-qd1": "4k randread qd1", "rr4k-qd32": "4k randread qd32",
            "rw4k-qd1": "4k randwrite qd1", "rw4k-qd32": "4k randwrite qd32"}
CPU_COLS = ("qemu_main", "qemu_workers", "vhost", "kthread", "other")

def cpu_window(f):
    keys = ("wall", "ticked", "idle", "ncpu", "vcpu", "qemu_proc", "qemu_thr", "vhost", "kthread",
            "user", "lost")
    w = dict(zip(keys, [int(x) for x in f[2:]]))
    w["busy"] = w["ncpu"] * w["wall"] - w["idle"]
    w["gross"] = w["busy"] - w["vcpu"]
    # Columns that add up to gross: QEMU's non-vCPU CPU from the process total (it keeps
    # exited threads); `other` is the rest (users, and busy time no live thread accounts for).
    w["qemu"] = w["qemu_proc"] - w["vcpu"]
    # QEMU's thread-pool workers (aio=threads) and iothreads, from the per-name line; the
    # main loop is the rest of QEMU (the process total keeps workers that exited).
    w["qemu_workers"] = 0
    w["qemu_main"] = w["qemu"]
    w["other"] = w["gross"] - w["qemu"] - w["vhost"] - w["kthread"]
    w["threads_sum"] = w["vcpu"] + w["qemu_thr"] + w["vhost"] + w["kthread"] + w["user"]
    return w


def cpu_threads(w, f):
    """Adds the per-name line ("LABEL NAME threads COMM=NS ...") to a window."""
    names = dict(kv.rsplit("=", 1) for kv in f[3:])
    w["qemu_workers"] = sum(int(v) for k, v in names.items()
                            if k.startswith("qemu:") and k != "qemu:qemu-system-x86")
    w["qemu_main"] = w["qemu"] - w["qemu_workers"]


cpu = R["cpu_per_io"]
cpu_reps = sorted(int(m.group(1)) for m in
                  (re.search(r"cpu-windows-r(\d+)\.txt$", f) for f in glob.glob(f"{vm}/cpu-windows-r*.txt")) if m)
backends = [b for b in CPU_BACKENDS if any(os.path.exists(os.path.join(vm, f"cpu-{b}-r{r}.log")) for r in cpu_reps)]
checks = []
per_rep = {}  # (backend, job) -> [job dict per repetition]
for r in cpu_reps:
    cw = {}
    for line in open(os.path.join(vm, f"cpu-windows-r{r}.txt")):
        f = line.split()
        if len(f) == 13 and f[2] != "threads":
            cw[(f[0], f[1])] = cpu_window(f)
            checks.append(cw[(f[0], f[1])])
        elif len(f) >= 3 and f[2] == "threads" and (f[0], f[1]) in cw:
            cpu_threads(cw[(f[0], f[1])], f)
    for b in backends:
        lf = os.path.join(vm, f"cpu-{b}-r{r}.log")
        if not os.path.exists(lf):
            continue
        fio = {}
        for m in re.finditer(r"CPU-FIO (\S+) rc=(\d+) ios=(\d+) iops=([\d.]+) clat_mean_ns=([\d.]+)",
                             open(lf, errors="replace").read()):
            fio[m.group(1)] = {"rc": int(m.group(2)), "ios": int(m.group(3)), "iops": float(m.group(4)),
                               "clat_us": float(m.group(5)) / 1000}
        base, idle = cw.get((b, "busy")), cw.get((b, "idle"))
        rate = {c: base[c] / base["wall"] for c in ("gross",) + CPU_COLS} if base else None
        cpu.setdefault(b, {"label": CPU_BACKENDS[b], "baseline_cpu_per_s": [], "idle_cpu_per_s": [],
                           "jobs": {}})
        if rate:
            cpu[b]["baseline_cpu_per_s"].append(rate["gross"])
        if idle:
            cpu[b]["idle_cpu_per_s"].append(idle["gross"] / idle["wall"])
        for job in CPU_JOBS:
            w, fr = cw.get((b, job)), fio.get(job)
            if not w or not fr or not fr["ios"] or not rate:
                continue
            n = fr["ios"]
            j = {**fr, "rep": r, "window_s": w["wall"] / 1e9, "vcpu_share": w["vcpu"] / w["wall"],
                 "gross_us": w["gross"] / n / 1e3, "baseline_us": rate["gross"] * w["wall"] / n / 1e3}
            j["net_us"] = j["gross_us"] - j["baseline_us"]
            for c in CPU_COLS:
                j[f"{c}_us"] = (w[c] - rate[c] * w["wall"]) / n / 1e3
            per_rep.setdefault((b, job), []).append(j)
for (b, job), js in per_rep.items():
    agg = {"reps": js}
    for k in ("ios", "iops", "clat_us", "gross_us", "baseline_us", "net_us") + tuple(f"{c}_us" for c in CPU_COLS):
        agg[k] = med([x[k] for x in js])
    agg["net_range"] = [min(x["net_us"] for x in js), max(x["net_us"] for x in js)]
    cpu[b]["jobs"][job] = agg
p("### Backend CPU per I/O (nested guest, TCG inside TCG)")
p()
if cpu:
    p("Host (test VM) CPU per I/O in µs, without the nested QEMU's vCPU thread. `gross`: the VM's "
      "busy time over the job minus the vCPU thread's, per I/O. `base`: the same rate while the "
      "guest's CPU spins without I/O, scaled to the job. `net` = gross − base, split (each "
      "column net of its own base) into QEMU's main loop, QEMU's thread-pool workers, the vhost "
      "worker, other kernel threads (kworkers), and the rest. TCG microseconds: "
      "compare rows with each other, not with hardware.")
    p()
    if len(cpu_reps) > 1:
        p(f"Median of {len(cpu_reps)} repetitions (one nested boot per backend each); the net column "
          "gives min-max.")
        p()
    p("| job | backend | I/Os | IOPS | lat ms | **net µs/IO** | gross | base | QEMU main | QEMU workers | vhost | kthreads | rest |")
    p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for job in CPU_JOBS:
        for b in backends:
            j = cpu[b]["jobs"].get(job)
            if not j or "net_us" not in j:
                p(f"| {CPU_JOBS[job]} | {b} | n/a | | | | | | | | | | |")
                continue
            rng_ = (f" ({j['net_range'][0]:.0f}-{j['net_range'][1]:.0f})" if len(j["reps"]) > 1 else "")
            p(f"| {CPU_JOBS[job]} | {b} | {j['ios']:.0f} | {j['iops']:.0f} | {j['clat_us'] / 1000:.1f} | "
              f"**{j['net_us']:.0f}**{rng_} | {j['gross_us']:.0f} | {j['baseline_us']:.0f} | {j['qemu_main_us']:.0f} | "
              f"{j['qemu_workers_us']:.0f} | "
              f"{j['vhost_us']:.0f} | {j['kthread_us']:.0f} | {j['other_us']:.0f} |")
    p()
    for b in backends:
        c = cpu[b]
        p(f"- {b}: {c['label']}; host CPU without the vCPU thread, ms per s: "
          f"{med(c['baseline_cpu_per_s']) * 1000:.0f} with the guest spinning, "
          f"{med(c['idle_cpu_per_s']) * 1000:.0f} with it idle")
    if checks:
        # Two independent measures of the same busy time: the clock-measured idle time and
        # the sum of every thread's run time. Their gap is the size of the error.
        gaps = [(w["busy"] - w["threads_sum"]) / w["wall"] for w in checks]
        ticked = [w["ticked"] / w["busy"] for w in checks if w["busy"] > 0]
        p(f"- check over {len(checks)} windows: busy time (CPUs × window − idle) minus the sum of all "
          f"threads' run time = {min(gaps) * 1000:+.0f} to {max(gaps) * 1000:+.0f} ms per s of window; "
          f"/proc/stat's tick-sampled busy time was {min(ticked):.2f}-{max(ticked):.2f} of it")
        R["cpu_per_io_check"] = {"gap_ms_per_s": [min(gaps) * 1000, max(gaps) * 1000],
                                 "ticked_ratio": [min(ticked), max(ticked)]}
else:
    p("Not run in this run (BENCH_PARTS without `cpu`).")
p()

# ---- targets ---------------------------------------------------------------------------
p("### Targets")
p()
p("| target | value | limit | met |")
p("| --- | ---: | ---: | --- |")
for t in R["targets"]:
    p(f"| {t['target']} | {t['value']} | {t['limit']} | {'yes' if t['met'] else '**no**'}"
      + (f" ({t['note']})" if t["note"] else "") + " |")

R["table_markdown"] = "\n".join(out)
os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
with open(json_out, "w") as f:
    json.dump(R, f, indent=1, sort_keys=False)
    f.write("\n")
print("\n".join(out))
