#!/usr/bin/env python3
"""Self time by op of a LibTorch legacy-profiler Chrome trace (bench_workload_torch's BM_profile_*).

    torch_trace.py TRACE.json [STEPS]

Events nest on their thread (aten::linear holds aten::matmul holds aten::mm); an op's self time is its
duration less that of the events directly inside it. Prints the ops by self time, per step when STEPS is
given, with their share of all traced time.
"""
import json
import sys
from collections import defaultdict


def main():
    path = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_thread = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    self_us, calls = defaultdict(float), defaultdict(int)
    total = 0.0
    for evs in by_thread.values():
        evs.sort(key=lambda x: (x[0], -x[1]))
        stack = []  # [end, name, child time]
        def pop():
            end, name, child, dur = stack.pop()
            self_us[name] += dur - child
        for ts, dur, name in evs:
            while stack and ts >= stack[-1][0]:
                pop()
            if stack:
                stack[-1][2] += dur
            else:
                total += dur
            stack.append([ts + dur, name, 0.0, dur])
            calls[name] += 1
        while stack:
            pop()
    print(f"traced {total / 1e3 / steps:.1f} ms per step ({steps} steps)")
    print(f"{'op':55s} {'self ms/step':>12s} {'share':>7s} {'calls/step':>10s}")
    for name, us in sorted(self_us.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{name[:55]:55s} {us / 1e3 / steps:12.2f} {100 * us / total:6.1f}% {calls[name] / steps:10.0f}")


if __name__ == "__main__":
    main()
