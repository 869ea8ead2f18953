"""benchmarks/adapt: run its scripts as modules from the repository root (python -m benchmarks.adapt.<script>)."""
