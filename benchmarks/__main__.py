"""`python -m benchmarks` (`make bench`): every benchmark in one run (benchmarks.harness.run)."""

from benchmarks.harness.run import main

main()
