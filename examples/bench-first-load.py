#!/usr/bin/env python3
"""A plugin's first load on a fresh runner, through `pier` itself.

    examples/bench-first-load.py [--runs N] PLUGIN.wasm PIER [PIER ...]

Each run starts with an empty compiled-plugin cache and runs `PIER plugins inspect
PLUGIN.wasm`, which compiles the plugin with the first tier (Winch), stores its artifact
and calls `describe`. Two times are taken: until the first call's store is made (the
`new store` line of `PIER_LOG=debug`, so from the command's start to the plugin running),
and of the whole command. Several `pier` binaries are run in turn, round after round, so
that a change of load on the machine reaches all of them alike; the medians are printed.
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def one_run(pier: str, plugin: str, cache: str) -> tuple[float, float]:
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, PIER_CACHE_DIR=cache, PIER_LOG="debug")
    start = time.time()
    done = subprocess.run([pier, "plugins", "inspect", plugin], env=env, capture_output=True, text=True)
    end = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{pier} plugins inspect {plugin} exited {done.returncode}:\n{done.stderr}")
    line = next(line for line in done.stderr.splitlines() if "new store" in line)
    stamp = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    return stamp - start, end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("plugin")
    parser.add_argument("pier", nargs="+")
    args = parser.parse_args()
    size = os.path.getsize(args.plugin) / 1e6
    first: dict[str, list[float]] = {pier: [] for pier in args.pier}
    whole: dict[str, list[float]] = {pier: [] for pier in args.pier}
    with tempfile.TemporaryDirectory() as scratch:
        cache = os.path.join(scratch, "cache")
        for _ in range(args.runs):
            for pier in args.pier:
                to_call, command = one_run(pier, args.plugin, cache)
                first[pier].append(to_call)
                whole[pier].append(command)
    for pier in args.pier:
        median = statistics.median(first[pier])
        print(
            f"{pier}: first call after {median:.3f} s median ({1000 * median / size:.0f} ms/MB; "
            f"{min(first[pier]):.3f}–{max(first[pier]):.3f} s), "
            f"whole command {statistics.median(whole[pier]):.3f} s median ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
