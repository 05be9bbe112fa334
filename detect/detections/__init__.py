"""What a detector returns, whatever runs it: the one owner of the detection contract.

    padded.py    the padded output every detector's postprocess returns ({boxes, scores, labels, num}), its
                 per-image cut (split_detections), and boxes back in the input image's pixels
                 (to_original_pixels: the one rescaling, for PyTorch and exported graphs alike)
    predict.py   the one prediction path: a batch in, detections out (evaluation, Detector, export)
    graph.py     the exported graph's contract: input and output names, the metadata an exported file
                 carries (written by detect export, read by every graph backend), the graph's outputs as
                 padded detections
    loaded.py    LoadedModel: a model behind this contract with its config and class names

Every room that predicts or runs a model (models, evaluation, infer, export, backends) imports this one;
it imports only config, data's normalization and errors.
"""
