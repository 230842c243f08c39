"""The benchmarks and the GPU check: run from a checkout (`make bench`, `make gpu-check`), never
installed with the package; they measure the installed code paths of `recap_label`."""
