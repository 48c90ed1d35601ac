"""Run every benchmark in turn (each prints its own ratio against its goal)."""

from benchmarks import bench_agent, bench_engines, bench_index, bench_shards, bench_twin, bench_unicycle

if __name__ == "__main__":
    import sys

    for mod in (bench_index, bench_unicycle, bench_shards, bench_twin, bench_engines, bench_agent):
        print(f"== {mod.__name__}", flush=True)
        sys.argv = [mod.__name__]
        mod.main()
