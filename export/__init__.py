"""Export toolchain: PyTorch re-implementation of the nine networks, checkpoint
fetch/verify/load, and (later) ONNX export. Needs the `[export]` extra (torch)."""
