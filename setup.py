"""paddle_mm: a PaddlePaddle-native multimodal toolkit (Chinese-CLIP, fusion, signed packages).

Exact versions that install together live in requirements/lock.txt (used by scripts/setup.sh);
the ranges below are what the code needs.
"""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="paddle_mm",
    version="0.1.0",
    description="PaddlePaddle-native Chinese image-text toolkit: Chinese-CLIP, fusion models, SM-signed packages",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["paddle_mm", "paddle_mm.*", "hardware", "hardware.*"]),
    package_data={
        "paddle_mm": [
            "models/model_configs/*.json",
            "text/vocab.txt",
            "text/NOTICE",
            "data/zeroshot/*.txt",
            "data/zeroshot/*.json",
            "data/zeroshot/NOTICE",
        ],
        "hardware": ["fake_npu/*.cc"],
    },
    install_requires=[
        "paddlepaddle==3.3.1",
        "numpy<2",
        "opencv-python-headless<4.12",
        "pyyaml>=6",
        "safetensors>=0.4",
        "tqdm",
        "gmssl>=3.2",
        "cryptography>=41",
    ],
    extras_require={
        "train": ["visualdl>=2.5", "lmdb"],
        "export": ["paddle2onnx==2.1.0", "onnxruntime"],
        "nlp": ["paddlenlp==3.0.0b4", "paddlex==3.1.4", "aistudio-sdk==0.2.6", "huggingface_hub<0.27",
                "datasets==2.19.2", "pyarrow<18"],
        "dev": ["pytest", "ruff"],
    },
    license="Apache-2.0",
)
