"""Side-by-side ratio benchmarks: our path and its reference in one run, on the same data (see BENCHMARKS.md)."""
