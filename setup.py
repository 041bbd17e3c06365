"""Install fastast_sb: FastAST (AST + token merging + distillation) for SpeechBrain."""

from setuptools import find_packages, setup

setup(
    name="fastast_sb",
    version="0.1.0",
    description=(
        "FastAST for SpeechBrain: Audio Spectrogram Transformer with token "
        "merging and cross-model knowledge distillation"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["fastast_sb", "fastast_sb.*"]),
    python_requires=">=3.9",
    install_requires=[
        # torch and torchaudio must be a matching pair; torchaudio's last
        # release is 2.11, and a newer torch breaks torchaudio's import.
        "torch>=2.7.1,<2.12",
        # torchaudio 2.11.1 fails to load its library beside torch 2.11.0
        # (undefined symbol), and no torch 2.11.1 exists: exclude it.
        "torchaudio>=2.7.1,!=2.11.1,<2.12",
        "speechbrain>=1.0",
        "hyperpyyaml>=1.2",
        "efficientnet-pytorch>=0.7",
        "scikit-learn>=1.0",
        "soundfile>=0.12",
        "numpy",
        "matplotlib>=3.5",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "transformers>=4.40",
            "onnx>=1.16",
            "onnxscript>=0.1",
            "onnxruntime>=1.17",
            "ruff>=0.5",
            # SpeechBrain's linters (make lint uses upstream's configs)
            "yamllint>=1.35",
            "codespell>=2.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "fastast-benchmark=fastast_sb.benchmark.cli:main",
            "fastast-tag=fastast_sb.inference.cli:main",
        ],
    },
)
