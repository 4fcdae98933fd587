"""The seed's data-preparation tools: frame extraction and image annotation."""
