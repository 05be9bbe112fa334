"""Detection metrics: VOC07/VOC12 AP (voc.py), COCO via pycocotools (coco.py), the evaluator
(evaluator.py), evaluation of a results JSON (detections_file.py), confusion matrix and plots."""
