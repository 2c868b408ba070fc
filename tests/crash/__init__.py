"""Kill -9 crash-safety harness (run as a test, or as `python -m tests.crash.harness`)."""
