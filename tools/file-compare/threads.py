"""Runs a command and reports where its CPU time went, per thread, without perf.

    python threads.py OUT_PREFIX CMD ARGS...

Samples /proc/PID/task/*/stat every 20 ms while CMD runs and keeps each thread's last user +
system time; threads are grouped by name (digits dropped: parse-0 and parse-1 are `parse-N`).
Writes the command's stdout and stderr to OUT_PREFIX.out and OUT_PREFIX.err and prints one
line per thread group: CPU seconds, share of the wall time (100 % = one core kept busy the
whole run), and the number of threads. The last < 20 ms of each thread are not seen; the
process total (from wait4) minus what was seen is printed as `(not seen)`.
"""

import os
import re
import subprocess
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def sample(pid: int, seen: dict) -> None:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; the fields after it are fixed.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TCK  # utime, stime
        seen[tid] = (comm, cpu)


def main() -> None:
    prefix, cmd = sys.argv[1], sys.argv[2:]
    seen: dict = {}
    t0 = time.perf_counter()
    with open(prefix + ".out", "w") as out, open(prefix + ".err", "w") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        while True:
            sample(p.pid, seen)
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    process_cpu = ru.ru_utime + ru.ru_stime
    groups: dict = {}
    for comm, cpu in seen.values():
        name = re.sub(r"[0-9]+", "N", comm)
        c, n = groups.get(name, (0.0, 0))
        groups[name] = (c + cpu, n + 1)
    total = sum(c for c, _ in groups.values())
    print(
        f"    wall {wall:.2f} s, process CPU {process_cpu:.2f} s "
        f"({100 * process_cpu / wall:.0f} % of one core); per thread:"
    )
    for name, (c, n) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        if c < 0.005:
            continue
        print(f"    {name:18} {c:7.2f} s  {100 * c / wall:5.0f} %  ({n} thread{'s' if n > 1 else ''})")
    lost = process_cpu - total
    if lost >= 0.005:
        print(f"    {'(not seen)':18} {lost:7.2f} s  {100 * lost / wall:5.0f} %  (threads that ended between samples)")
    sys.exit(rc)


if __name__ == "__main__":
    main()
