"""Model export: checkpoint → ONNX / TensorRT → Triton model repository (issue 4)."""
