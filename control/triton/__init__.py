"""Triton Inference Server: a local server manager and an async gRPC client."""
