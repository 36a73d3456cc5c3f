"""Ferry: export/import jobs requested over Kafka, run from a MongoDB ledger, served over HTTP."""
