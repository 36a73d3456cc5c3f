"""Jobs: the status machine, the MongoDB ledger and the lease-claiming runner."""
