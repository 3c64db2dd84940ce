"""Inference orchestration: routing cases to pipelines, the durable job queue and the worker."""
