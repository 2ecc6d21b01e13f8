"""Containment of the external programs: `tools` (caps, time limits, bounded output), `jail`
(network namespaces and the strict bubblewrap jail)."""
