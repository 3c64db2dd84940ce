"""The job worker: claims inference jobs, runs their served model on Triton, stores findings."""
