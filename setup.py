"""Install fracture_d2 (``pip install -e .``); torch and detectron2: see tools/setup_env.sh."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "fracture_d2" / "__init__.py").read_text(), version)

setup(
    name="fracture_d2",
    version=version["__version__"],
    description="Detectron2-based fracture detection and localisation in radiographs",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fracture_d2", "fracture_d2.*"]),
    install_requires=[
        "numpy>=1.24,<2",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "pycocotools>=2.0.2",
        "opencv-python-headless>=4.9",
        "albumentations>=2.0,<2.1",
        "pydicom>=3.0",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "pyyaml>=5.1",
    ],
    license="Apache-2.0",
)
