"""The fleet side: where trials run (Ray, a replay table, simulated devices), platforms and hardware."""
