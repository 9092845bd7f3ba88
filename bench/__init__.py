"""Engine benchmarks: scripts, not tests. Each runs with one command; see bench/RESULTS.md."""
