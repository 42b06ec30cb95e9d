"""Summarise a py-spy `--format raw` (folded stacks) profile: top self time and inclusive time of our code.

python3 bench/profile_top.py /tmp/labmesh-bench/import.folded [--top 25] [--match scheduler_svc,servicekit]
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--match", default="scheduler_svc,servicekit,labmesh,sqlalchemy,asyncpg,grpc,json,protobuf")
    args = ap.parse_args()
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in open(args.path):
        stack, _, n = line.rstrip().rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    print(f"{total} samples")
    print("self time:")
    for frame, c in own.most_common(args.top):
        print(f"  {100 * c / total:5.1f}%  {frame[:150]}")
    keys = args.match.split(",")
    print("inclusive time (matching frames):")
    shown = 0
    for frame, c in incl.most_common():
        if any(k in frame for k in keys):
            print(f"  {100 * c / total:5.1f}%  {frame[:150]}")
            shown += 1
            if shown >= args.top:
                break


if __name__ == "__main__":
    main()
