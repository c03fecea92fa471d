"""What this machine is (platform detection and the kernel's hardware facts): below both the
node agent and the fleet, which each need it."""
