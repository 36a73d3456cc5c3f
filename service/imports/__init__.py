"""Contact imports: a CSV streamed from the object store, validated, deduplicated, upserted."""
