"""NAT traversal: the pure strategy table between two profiles, and port prediction / birthday
probing plans (ARCHITECTURE.md section 7, issue 5)."""
