"""Implementations benchmarked through attnbench's user-implementation path (module.path:factory)."""
