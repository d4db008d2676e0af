"""Per-step feature extraction: step assembly (shared by training and serving) and extractors."""
