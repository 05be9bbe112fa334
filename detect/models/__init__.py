"""Detection models.

The contract every detector keeps (Faster R-CNN in faster_rcnn.py, SSD in ssd.py):

    outputs = model(images, image_sizes, targets=None)
        images       float32 [B, 3, H, W], normalized, padded (H, W multiples of input.size_divisible):
                     a loader batch after detect.data.normalize.normalize_batch (the loader may send
                     uint8 pixels; models never see those)
        image_sizes  int64 [B, 2]: (h, w) of each image's valid (resized, unpadded) region
        targets      None, or a list of B dicts, in the resized image's pixels:
                       boxes  float32 [N, 4] xyxy;  labels int64 [N] in 1..C (0 is background)
        returns      with targets: {"loss_<name>": scalar tensor, ...} (the training loss is their sum);
                     without:      the raw head outputs, a dict that `postprocess` understands.

    detections = model.postprocess(outputs, image_sizes, scales)
        scales       float32 [B, 2]: (sx, sy) with resized = original * scale
        returns      padded, fixed-shape detections that tracing keeps (detections.py):
                     {boxes float32 [B, D, 4] xyxy in original image pixels, scores float32 [B, D]
                     descending, labels int64 [B, D] in 1..C, num int64 [B]}; per-image lists are
                     cut from them at the edges (detections.split_detections)

Everything that predicts goes through detect.detections.predict; both detectors share the box primitives
(boxes.py: coder, IoU, clipping, padded ground truth; matcher.py; nms.py).

`model.num_classes` is C, the number of foreground classes. Every detector is a DetectionModel
(detection_model.py), registered in DETECTORS by `model.arch`; it declares what weight loading, export
and fusing need. `build_model` (build.py) turns the config into a model.
"""
