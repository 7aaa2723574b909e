"""What drives the real Pulumi CLI, the simulated clusters, the real charts and the schemas, for the tests and the benchmarks alike."""
