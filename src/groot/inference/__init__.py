"""Real-time inference fast path: GPU preprocessing, static-shape buckets, CUDA-graph stages."""

from groot.inference.engine import InferenceEngine

__all__ = ["InferenceEngine"]
