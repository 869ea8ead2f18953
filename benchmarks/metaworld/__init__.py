"""benchmarks/metaworld: run its scripts as modules from the repository root (python -m benchmarks.metaworld.<script>)."""
