"""The worker side: one trial in an isolated process, measured by LoadGen."""
