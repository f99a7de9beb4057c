"""The AI kernel shared by the AI subgraph and the workers' AI nodes.

``embeddings``: the ``Embedder`` protocol, the local all-MiniLM-L6-v2 embedder (ONNX,
no network) and an OpenAI-compatible one, chosen from settings.
"""
