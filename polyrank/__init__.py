"""polyrank: multilingual product reranking on Triton Inference Server."""

__version__ = "0.1.0"
