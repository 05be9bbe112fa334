"""Measuring the product, kept apart from it (not installed by `pip install .`): torchvision's peers of
our detectors and the adapter that puts any torchvision detector behind our model contract, the speed
harness, and the benchmark table. Used by tools/ and tests/; run from the repository root.

    torchvision_adapter.py  TorchvisionAdapter, switch_off_transform (the one way to do it)
    peers.py                torchvision's detectors built with our settings (build_peer)
    zoo.py                  torchvision's own detection models by builder name, local state dicts
    shared_weights.py       our weights copied into a peer
    speed.py                synthetic batches and timed steps (tools/bench_speed.py)
    host_syncs.py           tensor calls that would make a CUDA host wait
    map_table.py            mAP, images/s and latency per model on one split (tools/eval_map.py)
"""
