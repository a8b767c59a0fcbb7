"""Packages are discovered, never listed: every folder under the repository's three top-level
folders ships as the matching `dcign.*` package (a folder of shaders or arrays is a package
holding only data), so a new module cannot be left out of the wheel;
tests/project/test_distribution.py compares the wheel and the sdist with the tracked files.
The rest is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

# The repository's top-level folders are the subpackages of one `dcign` namespace.
TOP = {"dcign.render": "render", "dcign.train": "train", "dcign.shared": "shared"}

setup(
    package_dir=TOP,
    packages=[f"{name}{'.' + sub if sub else ''}" for name, folder in TOP.items()
              for sub in ["", *find_namespace_packages(folder, exclude=["*__pycache__*"])]],
)
