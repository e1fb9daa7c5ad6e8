"""Bronze -> Silver: the Bronze schema, pure Silver transformations, and the availableNow ingest."""
