"""dpcn-lite: DPCN (Dynamic Prototype Convolution Network, CVPR 2022) for few-shot segmentation, built to be read."""

__version__ = "0.1.0"
