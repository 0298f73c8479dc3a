"""The model manifest and label files, shipped inside the package (binaries are fetched, never committed)."""
