"""The model registry: versioned artefacts on disk with an optional Postgres ``models`` table mirror."""
