"""Training, datasets and evaluation for the CXR and BraTS models (issue 3)."""
