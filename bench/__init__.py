"""`make bench`: throughput and cost-growth benchmarks, printed as a table of ratios."""
