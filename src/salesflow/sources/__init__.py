"""Sources of sales landing files: readers for real input and a synthetic generator for tests."""
