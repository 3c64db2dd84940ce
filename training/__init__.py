"""Training, datasets and evaluation of the served models (one task each, see
:mod:`training.tasks.registry`)."""
