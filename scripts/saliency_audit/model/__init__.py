"""The models: architectures, the factory, batches, checkpoints and classification metrics."""
