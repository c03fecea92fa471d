"""Trial records, Pareto analysis, reports and MLPerf submission packing."""
