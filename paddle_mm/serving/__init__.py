"""The model service: an audited FastAPI app over a verified package, dynamic batching and gallery search.

``from paddle_mm.serving.app import create_app`` (FastAPI, uvicorn, prometheus-client); galleries in
:mod:`paddle_mm.serving.gallery` (faiss-cpu, pymilvus). ``import paddle_mm`` never imports this package.
"""
