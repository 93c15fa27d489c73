"""Few-shot segmentation data: the embedded synthetic benchmark, PASCAL-5i, COCO-20i, episodes and transforms."""
