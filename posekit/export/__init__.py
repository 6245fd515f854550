"""Export to ONNX / TorchScript, and ONNX Runtime as an inference backend."""
