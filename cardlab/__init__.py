"""cardlab command line and pipelines."""
