"""benchmarks/sim_robot: run its scripts as modules from the repository root (python -m benchmarks.sim_robot.<script>)."""
