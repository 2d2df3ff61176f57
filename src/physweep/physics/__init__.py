"""Flow solver, datasets, physics gates and projections."""
