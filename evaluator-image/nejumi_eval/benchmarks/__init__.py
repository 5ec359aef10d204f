"""Benchmarks: the protocol every benchmark implements (`base`), the registry (`registry`), and one
folder per benchmark (`jaster/`, `mtbench/`) holding its protocol data, sources, scoring and CLI."""
