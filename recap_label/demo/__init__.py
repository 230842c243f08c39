"""Tools for developing and showing recap-label, not used by the commands: the synthetic LeRobot
writer, the benchmark, `make demo`, and tiny value-model helpers for tests."""
