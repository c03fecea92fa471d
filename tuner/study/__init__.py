"""The study side: the driver, its scheduler, the per-platform plans and what a result becomes."""
