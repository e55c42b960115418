"""The `pasm` command: small tools around a run's artifacts and its trained models."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pasm.evaluate.summary import collect, format_table


def _parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="pasm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="accuracy per round and split, from metrics files")
    summary.add_argument(
        "metrics",
        nargs="+",
        metavar="METRICS",
        help="rounds' metrics.json and cross-data-set results, e.g. results/demo/round*/metrics.json "
        "results/demo/round*/cross/*/metrics.json",
    )

    predict = sub.add_parser(
        "predict",
        help="classify the expression of every face in photographs (JSON lines on stdout)",
        description="Detect faces (MTCNN), align them as the model's training faces were, classify them, "
        "and print "
        "one JSON object per face; a file without a face or that cannot be read gets one record too. "
        "Exit status 0 if every file was read, 2 if some could not be.",
    )
    predict.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image files, or folders searched recursively for .jpg/.jpeg/.png/.bmp/.webp; "
        "video files (.mp4, .avi, .mov, .mkv, .webm) and, with --frames, folders of frames "
        "are read as videos (a CSV per video, see --out)",
    )
    predict.add_argument("--model", required=True, help="a model file, e.g. results/<ds>/round<r>/model.pt")
    predict.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA when available (default)",
    )
    predict.add_argument(
        "--batch-size", type=int, default=32, help="faces per classification forward (default 32)"
    )
    predict.add_argument(
        "--detect-batch-size",
        type=int,
        default=16,
        help="photos read and detected together; equal-sized ones share MTCNN batches (default 16)",
    )
    predict.add_argument(
        "--min-face-prob",
        type=float,
        default=0.9,
        help="leave out detections MTCNN is less sure of than this (default 0.9)",
    )
    predict.add_argument(
        "--annotate", metavar="DIR", help="also write each photo with boxes and top labels to DIR"
    )
    video = predict.add_argument_group("videos")
    video.add_argument(
        "--frames", action="store_true", help="read folders as videos: frame images sorted by name"
    )
    video.add_argument("--fps", type=float, default=25.0, help="frame rate of frame folders (default 25)")
    video.add_argument("--every", type=int, default=1, help="classify every Nth frame (default 1: all)")
    video.add_argument(
        "--window",
        type=int,
        default=5,
        help="average each track's probabilities over this many sampled frames (default 5)",
    )
    video.add_argument(
        "--out",
        default=".",
        metavar="DIR",
        help="where <video>.csv (frame, time, track, box, probabilities, label) goes (default .)",
    )
    video.add_argument(
        "--annotate-video", action="store_true", help="also write <video>.annotated.mp4 to --out"
    )
    video.add_argument(
        "--plot", action="store_true", help="also plot each track's expressions over time to --out"
    )

    serve = sub.add_parser(
        "serve",
        help="an HTTP service: POST /predict, GET /health, and a page at / to try photos",
        description="Load the detector and the model once and answer HTTP requests until interrupted.",
    )
    serve.add_argument("--model", required=True, help="a model file, e.g. results/<ds>/round<r>/model.pt")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    serve.add_argument(
        "--max-mb", type=float, default=10.0, help="largest accepted upload in MiB (default 10)"
    )
    serve.add_argument("--min-face-prob", type=float, default=0.9)

    export = sub.add_parser(
        "export",
        help="write a model file as ONNX (needs the 'export' extra)",
        description="ONNX input 'pixels': uint8 (N, H, W, 3) aligned faces; "
        "output 'probabilities': float32 (N, C); "
        "normalisation and softmax are inside the graph, N is dynamic. Checked against PyTorch.",
    )
    export.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    export.add_argument("--model", required=True, help="a model file, e.g. results/<ds>/round<r>/model.pt")
    return parser


def _predict(args: argparse.Namespace) -> int:
    """Run `pasm predict`; 0 when every input was read, 2 when some were not, 1 when nothing could run."""
    from pasm.app.predict import Predictor, find_images, predict_files
    from pasm.app.video import is_video
    from pasm.nn.models import NotAModelFile

    videos = [p for p in args.paths if is_video(p) or (args.frames and Path(p).is_dir())]
    inputs = find_images([p for p in args.paths if p not in videos])
    if not inputs and not videos:
        print(f"pasm predict: no images found in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    try:
        predictor = Predictor(
            args.model, args.device, args.batch_size, args.detect_batch_size, args.min_face_prob
        )
    except (NotAModelFile, FileNotFoundError) as exc:  # the message names the file and what it is
        print(f"pasm predict: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        print(f"pasm predict: cannot use model {args.model}: {exc}", file=sys.stderr)
        return 1
    unreadable = (
        predict_files(inputs, predictor, sys.stdout, args.annotate, args.detect_batch_size) if inputs else 0
    )
    unreadable += _predict_videos(videos, predictor, args)
    if unreadable:
        print(
            f"pasm predict: {unreadable} of {len(inputs) + len(videos)} files could not be read",
            file=sys.stderr,
        )
    return 2 if unreadable else 0


def _predict_videos(videos: list[str], predictor: object, args: argparse.Namespace) -> int:
    """Each video's CSV (and annotated video, plot) under --out, one JSON line per video; returns the
    unreadable count.

    Whatever fails for one video (a broken link, a truncated or damaged file, the model) is that
    video's error record, with the reason, and the next video is still answered."""
    import json

    from pasm.app.video import predict_video
    from pasm.data.readers.folder import broken_link

    unreadable = 0
    for path in videos:
        stem = Path(Path(path).name).stem or "frames"
        out = Path(args.out)
        record = {"file": str(path), "csv": str(out / f"{stem}.csv")}
        try:
            reason = broken_link(path)
            if reason is not None:
                raise ValueError(f"{path}: {reason}")
            counts = predict_video(
                path,
                predictor,
                out / f"{stem}.csv",
                every=args.every,
                window=args.window,
                fps=args.fps,
                annotate_video=out / f"{stem}.annotated.mp4" if args.annotate_video else None,
                plot=out / f"{stem}.tracks.png" if args.plot else None,
            )
            record.update(status="ok", **counts)
        except Exception as exc:  # this video's answer, not the run's end
            unreadable += 1
            message = str(exc)
            if not isinstance(exc, (ValueError, OSError)) or str(path) not in message:
                message = f"cannot read video {path}: {type(exc).__name__}: {exc}"
            record.update(status="error", error=message)
            print(f"pasm predict: {message}", file=sys.stderr, flush=True)
        print(json.dumps(record), flush=True)
    return unreadable


def _serve(args: argparse.Namespace) -> int:
    """Run `pasm serve`; 1 with a one-line message when the model file or the extra is not usable."""
    from pasm.nn.models import NotAModelFile

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from pasm.app.serve import serve
    except ImportError as exc:
        print(f"pasm serve: {exc}; install the extra: pip install 'pasm[serve]'", file=sys.stderr)
        return 1
    try:
        serve(args.model, args.host, args.port, args.device, int(args.max_mb * 2**20), args.min_face_prob)
    except (NotAModelFile, FileNotFoundError) as exc:
        print(f"pasm serve: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        print(f"pasm serve: cannot use model {args.model}: {exc}", file=sys.stderr)
        return 1
    return 0


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
    print(
        f"wrote {args.onnx}: {info['arch']}, {len(info['classes'])} classes, {info['image_size']} px input, "
        f"max |ONNX - PyTorch| {info['max_abs_diff']:.1e}"
    )
    return 0


def _summary(args: argparse.Namespace) -> int:
    """Print the per-round table of the given metrics files; 1 with a line naming a file that cannot be
    read."""
    try:
        rows = collect(args.metrics)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"pasm summary: cannot read the metrics files: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(format_table(rows))
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
    if args.command == "serve":
        return _serve(args)
    return _summary(args)


if __name__ == "__main__":
    sys.exit(main())
