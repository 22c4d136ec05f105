"""Stage 3: the SPADE face generator (graph `face_256`, or `face_512` in HR mode) on the
active backend, with the original's pre- and post-processing.

In: the aligned crop as the original's test_face.py loads it: ToTensor (u8 / 255, float32)
then Normalize(0.5, 0.5). Out: save_image((g + 1) / 2), i.e. clamp(255 x + 0.5) truncated
to uint8, computed in float32 as torchvision does.
"""
from __future__ import annotations

import numpy as np

GRAPH_FOR_SIZE = {256: "face_256", 512: "face_512"}
# One face per run: the 512 px generator peaked at 1.5 GB for one face and 4.1 GB for a batch
# of four (onnxruntime CPU; benchmarks/results/stage_memory.md), over the 4G default next to
# the global sessions, and four faces took as long either way (56 s vs 59 s).
DEFAULT_BATCH = 1


def to_generator_input(crops_u8: np.ndarray) -> np.ndarray:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 in [-1, 1]."""
    x = crops_u8.astype(np.float32) / np.float32(255)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def from_generator_output(output: np.ndarray) -> np.ndarray:
    """N x 3 x S x S tanh output -> N x S x S x 3 uint8, as torchvision's save_image writes it."""
    x = (output.astype(np.float32) + np.float32(1)) / np.float32(2)
    x = np.clip(x * np.float32(255) + np.float32(0.5), 0, 255)
    return np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))


class FaceGenerator:
    """Runs aligned crops through the exported generator, `batch_size` faces per run."""

    def __init__(self, backend, size: int = 256, batch_size: int = DEFAULT_BATCH):
        if size not in GRAPH_FOR_SIZE:
            raise ValueError(f"face crops are 256 or 512 px, not {size}")
        self.backend = backend
        self.size = size
        self.graph = GRAPH_FOR_SIZE[size]
        self.batch_size = max(1, int(batch_size))

    def __call__(self, crops_u8: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 crops -> N x S x S x 3 uint8 enhanced crops."""
        if crops_u8.shape[1:3] != (self.size, self.size):
            raise ValueError(f"expected {self.size} px crops, got {crops_u8.shape[1:3]}")
        out = np.empty_like(crops_u8)
        for start in range(0, len(crops_u8), self.batch_size):
            batch = to_generator_input(crops_u8[start:start + self.batch_size])
            result = self.backend.run(self.graph, {"face": batch})["output"]
            out[start:start + len(batch)] = from_generator_output(result)
        return out
