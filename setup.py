"""hrl-rec: a TensorFlow/Keras reproduction of HRL-Rec (Xie et al., AAAI 2021).

Versions are pinned to the ones the test suite was run with (see MEASURED.md).
tensorflow-cpu, not tensorflow: the plain wheel is 2 GB and warns about CUDA at every start.
TF 2.21 does not pull in TensorBoard, and tf.summary needs it, so it is listed explicitly.
"""
from setuptools import find_packages, setup

setup(
    name="hrl-rec",
    version="0.1.0",
    description="Hierarchical RL for integrated recommendation (HRL-Rec) in TensorFlow 2 / Keras 3",
    python_requires=">=3.11",
    packages=find_packages(include=["hrl_rec*", "baselines*", "data*", "experiments*"]),
    install_requires=[
        "tensorflow-cpu==2.21.0",
        "keras==3.15.1",
        "tensorboard==2.21.0",
        "numpy==2.4.6",
        "scipy==1.17.1",
        "scikit-learn==1.9.1",
        "absl-py==2.5.1",
    ],
    extras_require={
        "dev": ["pytest==9.2.0", "matplotlib==3.11.2"],  # matplotlib: the tests check the figures
        "plot": ["matplotlib==3.11.2"],
    },
)
