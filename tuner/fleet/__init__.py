"""The fleet side: where trials run (the Dispatcher protocol: Ray, a replay table, simulated devices)."""
