"""calib package."""
