"""`make demo` (`python -m recap_label.demo`) and what it runs on, not used by the commands: the
synthetic LeRobot dataset writer (`synth`, also the tests' and benchmarks' data) and the tiny
value model shipped in `recap_label/assets/` (`tiny_model`)."""
