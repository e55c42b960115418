"""The `pasm` command: small tools around a run's artifacts and its trained models."""

from __future__ import annotations

import argparse
import logging
import sys

from pasm.evaluate.summary import collect, format_table


def _parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="pasm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="accuracy per round and split of results/<dataset>")
    summary.add_argument("dataset_dir", help="e.g. results/demo")

    predict = sub.add_parser(
        "predict", help="classify the expression of every face in photographs (JSON lines on stdout)",
        description="Detect faces (MTCNN), align them as the model's training faces were, classify them, and print "
                    "one JSON object per face; a file without a face or that cannot be read gets one record too. "
                    "Exit status 0 if every file was read, 2 if some could not be.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="image files, or folders searched recursively for .jpg/.jpeg/.png/.bmp/.webp")
    predict.add_argument("--model", required=True, help="a model file, e.g. results/<ds>/round<r>/model.pt")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                         help="auto: CUDA when available (default)")
    predict.add_argument("--batch-size", type=int, default=32, help="faces per classification forward (default 32)")
    predict.add_argument("--detect-batch-size", type=int, default=16,
                         help="photos read and detected together; equal-sized ones share MTCNN batches (default 16)")
    predict.add_argument("--min-face-prob", type=float, default=0.9,
                         help="leave out detections MTCNN is less sure of than this (default 0.9)")
    predict.add_argument("--annotate", metavar="DIR", help="also write each photo with boxes and top labels to DIR")

    export = sub.add_parser(
        "export", help="write a model file as ONNX (needs the 'export' extra)",
        description="ONNX input 'pixels': uint8 (N, H, W, 3) aligned faces; output 'probabilities': float32 (N, C); "
                    "normalisation and softmax are inside the graph, N is dynamic. Checked against PyTorch.",
    )
    export.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    export.add_argument("--model", required=True, help="a model file, e.g. results/<ds>/round<r>/model.pt")
    return parser


def _predict(args: argparse.Namespace) -> int:
    """Run `pasm predict`; 0 when every input was read, 2 when some were not, 1 when nothing could run."""
    from pasm.app.predict import Predictor, find_images, predict_files
    from pasm.nn.models import NotAModelFile

    inputs = find_images(args.paths)
    if not inputs:
        print(f"pasm predict: no images found in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    try:
        predictor = Predictor(args.model, args.device, args.batch_size, args.detect_batch_size, args.min_face_prob)
    except (NotAModelFile, FileNotFoundError) as exc:  # the message names the file and what it is
        print(f"pasm predict: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        print(f"pasm predict: cannot use model {args.model}: {exc}", file=sys.stderr)
        return 1
    unreadable = predict_files(inputs, predictor, sys.stdout, args.annotate, args.detect_batch_size)
    if unreadable:
        print(f"pasm predict: {unreadable} of {len(inputs)} files could not be read", file=sys.stderr)
    return 2 if unreadable else 0


def _export(args: argparse.Namespace) -> int:
    """Run `pasm export`; prints the written path and the measured ONNX/PyTorch difference."""
    try:
        from pasm.app.export import export_onnx

        info = export_onnx(args.model, args.onnx)
    except ImportError as exc:
        print(f"pasm export: {exc}; install the extra: pip install 'pasm[export]'", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        print(f"pasm export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx}: {info['arch']}, {len(info['classes'])} classes, {info['image_size']} px input, "
          f"max |ONNX - PyTorch| {info['max_abs_diff']:.1e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pasm` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="pasm: %(message)s", stream=sys.stderr)
    logging.getLogger("pasm").setLevel(logging.INFO)  # pasm's progress lines; other libraries' warnings only
    if args.command == "predict":
        return _predict(args)
    if args.command == "export":
        return _export(args)
    rows = collect(args.dataset_dir)
    if not rows:
        print(f"no metrics.json under {args.dataset_dir}/round*/", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
