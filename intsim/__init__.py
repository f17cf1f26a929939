"""intsim package."""
