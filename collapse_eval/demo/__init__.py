"""The embedded offline demo world: synthetic data, tiny models, end-to-end compare."""
