"""Metric aggregation and statistics: intervals, significance tests, per-kind metrics."""
