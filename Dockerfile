# detect on CUDA. Build:  docker build -t detect .
# Run:    docker run --gpus all --shm-size 8g -v $PWD/data:/data -v $PWD/runs:/runs detect \
#             train --config voc_faster_rcnn --set data.root=/data/VOCdevkit --out /runs/voc
# The base image brings CUDA, cuDNN, torch and torchvision; pip keeps them and adds the rest.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    TORCH_HOME=/weights

WORKDIR /opt/detect
COPY pyproject.toml README.md ./
COPY detect ./detect
COPY configs ./configs
COPY tools ./tools
# The tools' measuring code: beside them, not installed by pip (as in a source checkout).
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir ".[export,openvino]"

# Datasets, run folders and cached ImageNet weights live outside the image.
VOLUME ["/data", "/runs", "/weights"]
# detect serve's port (run it with --host 0.0.0.0 inside the container).
EXPOSE 8000
WORKDIR /runs
ENTRYPOINT ["detect"]
CMD ["--help"]
