"""Job plumbing shared by every rule: logs, signals, atomic writes, shards, checksums, reuse, image manifest."""
