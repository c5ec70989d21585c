#!/usr/bin/python3
"""Reference pipeline for `npm run bench`: what a PySpark/pandas notebook would run on one machine.

MobileNetV2 (torchvision, random weights: only the speed matters) features = `features` + adaptive average
pooling -> 1280 values, 224x224 input, the same thread count as orchard; images read from disk with PIL,
resized to 224, normalised; then scikit-learn PCA with orchard's k. Prints one JSON object on stdout.

  images mode:  reference.py images --list FILE --k K --threads T --batch-size B
  pca mode:     reference.py pca --features FILE.f32 --rows N --dim D --k K --threads T
  quality mode: reference.py quality --fp32 A.f32 --int8 B.f32 --labels FILE --dim D --variance V
                (int8 features against fp32: cosine, nearest-neighbour agreement, 5-fold 1-NN accuracy of both)

Needs Debian's python3-torch python3-torchvision python3-sklearn python3-numpy (run with /usr/bin/python3).
"""
import argparse
import json
import os
import sys
import time

MISSING_HINT = "apt-get install python3-torch python3-torchvision python3-sklearn python3-numpy"


def fail_missing(error):
    print(json.dumps({"error": "missing", "message": f"{error}; install with: {MISSING_HINT}"}))
    sys.exit(3)


def set_threads(threads):
    # Before numpy/torch start their pools.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def run_images(args):
    try:
        import numpy as np
        import torch
        import torchvision
        from PIL import Image
        from sklearn.decomposition import PCA
    except ImportError as error:
        fail_missing(error)
    torch.set_num_threads(args.threads)
    with open(args.list, encoding="utf-8") as handle:
        files = [line.rstrip("\n") for line in handle if line.strip()]

    net = torchvision.models.mobilenet_v2(weights=None)
    net.eval()
    pool = torch.nn.AdaptiveAvgPool2d(1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(batch):
        with torch.no_grad():
            return torch.flatten(pool(net.features(batch)), 1)

    with torch.no_grad():  # warm-up, not timed (as orchard's model warm-up is excluded from predict)
        features(torch.zeros(args.batch_size, 3, 224, 224))

    started = time.perf_counter()
    rows = []
    predict_s = 0.0
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        arrays = []
        for file in chunk:
            with Image.open(file) as image:
                arrays.append(np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.uint8))
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        batch = (batch - mean) / std
        t0 = time.perf_counter()
        rows.append(features(batch).numpy())
        predict_s += time.perf_counter() - t0
    extract_s = time.perf_counter() - started
    matrix = np.concatenate(rows, axis=0)
    t0 = time.perf_counter()
    k = min(args.k, matrix.shape[0], matrix.shape[1])
    PCA(n_components=k, svd_solver="full").fit_transform(matrix)
    pca_s = time.perf_counter() - t0
    total = time.perf_counter() - started
    print(json.dumps({
        "images": len(files),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "extract_s": extract_s,
        "predict_s": predict_s,
        "pca_s": pca_s,
        "total_s": total,
        "img_per_s": len(files) / total,
        "model_img_per_s": len(files) / predict_s,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }))


def run_pca(args):
    try:
        import numpy as np
        import sklearn
        from sklearn.decomposition import PCA
    except ImportError as error:
        fail_missing(error)
    matrix = np.fromfile(args.features, dtype="<f4").reshape(args.rows, args.dim)
    t0 = time.perf_counter()
    PCA(n_components=args.k, svd_solver="full").fit_transform(matrix)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rows": args.rows, "dim": args.dim, "k": args.k, "threads": args.threads,
                      "sklearn_pca_s": seconds, "sklearn": sklearn.__version__}))


def run_quality(args):
    try:
        import numpy as np
        from sklearn.decomposition import PCA
        from sklearn.model_selection import cross_val_score
        from sklearn.neighbors import KNeighborsClassifier
    except ImportError as error:
        fail_missing(error)
    a = np.fromfile(args.fp32, dtype="<f4").reshape(-1, args.dim).astype(np.float64)
    b = np.fromfile(args.int8, dtype="<f4").reshape(-1, args.dim).astype(np.float64)
    with open(args.labels) as f:
        labels = [line.rstrip("\n") for line in f]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    def nearest(x):
        squared = (x * x).sum(1)
        distance = squared[:, None] + squared[None, :] - 2 * x @ x.T
        np.fill_diagonal(distance, np.inf)
        return distance.argmin(1)

    def accuracy(x):
        # As orchard's figures are measured: 1-NN, 5-fold, on the PCA rows (components explaining `variance`).
        rows = PCA(n_components=args.variance, svd_solver="full").fit_transform(x)
        return float(cross_val_score(KNeighborsClassifier(1), rows, labels, cv=5).mean())

    print(json.dumps({
        "images": len(a),
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "nn_agreement": float((nearest(a) == nearest(b)).mean()),
        "accuracy_fp32": accuracy(a),
        "accuracy_int8": accuracy(b),
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    images = sub.add_parser("images")
    images.add_argument("--list", required=True)
    images.add_argument("--k", type=int, required=True)
    images.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    images.add_argument("--batch-size", type=int, default=8)
    pca = sub.add_parser("pca")
    pca.add_argument("--features", required=True)
    pca.add_argument("--rows", type=int, required=True)
    pca.add_argument("--dim", type=int, required=True)
    pca.add_argument("--k", type=int, required=True)
    pca.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    quality = sub.add_parser("quality")
    quality.add_argument("--fp32", required=True)
    quality.add_argument("--int8", required=True)
    quality.add_argument("--labels", required=True)
    quality.add_argument("--dim", type=int, required=True)
    quality.add_argument("--variance", type=float, default=0.95)
    quality.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    set_threads(args.threads)
    {"images": run_images, "pca": run_pca, "quality": run_quality}[args.mode](args)


if __name__ == "__main__":
    main()
