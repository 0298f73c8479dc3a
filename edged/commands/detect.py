"""`edged detect IMAGE…`: run the detector on image files; print, emit JSON lines, or write annotated copies.

`--json` prints one object per image on its own line — the same detection
objects the MQTT payload carries — so stdout stays machine-readable (runtime
chatter such as XNNPACK's banner goes to stderr). A bad image is reported on one
line and the others are still processed; the exit code is the first error's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edged.errors import EX_USAGE, DataError, EdgedError, NoInputError, UnavailableError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files (JPEG, PNG, BMP, ...); none: the sample photos `edged models fetch` got")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="NAME", help="model name from `edged models list` "
                       "(default: ssd_mobilenet_v1_coco_quant)")
    which.add_argument("--model-file", metavar="FILE", help="a .tflite SSD model file to run on the CPU")
    parser.add_argument("--labels", metavar="FILE", help="labels for --model-file, one per line (default: COCO)")
    parser.add_argument("--anchors", metavar="FILE", help="anchors .npy for a raw SSD --model-file")
    parser.add_argument("--edgetpu-model-file", metavar="FILE", help="the Edge TPU build to use instead")
    parser.add_argument("--raw", action="store_true",
                        help="run the model's raw variant (no NMS in the model): edged decodes and runs NMS")
    parser.add_argument("--backend", choices=["auto", "cpu", "edgetpu"], default="auto",
                        help="where to run (default: auto = Edge TPU if usable, else CPU)")
    parser.add_argument("--edgetpu-device", metavar="DEV", help="usb, usb:N, pci or pci:N (default: usb)")
    parser.add_argument("--edgetpu-library", metavar="LIB", help="delegate library (default: libedgetpu.so.1)")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="T", help="minimum score (default: 0.5)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: 1)")
    parser.add_argument("--resize", choices=["stretch", "letterbox"], help="how images fit the model input")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument("--annotate", metavar="OUT",
                        help="write the image with boxes drawn: a file for one image, a directory for several")


def _settings(args: argparse.Namespace):
    import msgspec

    from edged.detect.settings import DetectorSettings

    values = {"model": args.model, "model_file": args.model_file, "labels_file": args.labels,
              "anchors_file": args.anchors, "edgetpu_model_file": args.edgetpu_model_file,
              "cpu_variant": "raw" if args.raw else None, "backend": args.backend,
              "edgetpu_device": args.edgetpu_device, "edgetpu_library": args.edgetpu_library,
              "threshold": args.threshold, "threads": args.threads, "resize": args.resize}
    try:
        return msgspec.convert({k: v for k, v in values.items() if v is not None}, DetectorSettings)
    except msgspec.ValidationError as exc:
        raise EdgedError(f"invalid option: {exc}", exit_code=EX_USAGE) from None


def annotation_targets(images: list[str], out: str | None) -> list[Path | None]:
    """Where each annotated image goes: OUT itself for one image (unless a directory), else OUT/<stem>.jpg."""
    if out is None:
        return [None] * len(images)
    target = Path(out)
    if len(images) == 1 and not target.is_dir():
        from PIL import Image

        if target.suffix.lower() not in Image.registered_extensions():
            raise EdgedError(f"--annotate {out}: unknown image type (use .jpg or .png)", exit_code=EX_USAGE)
        return [target]
    targets, used = [], set()
    for image in images:
        stem, n = Path(image).stem, 1
        while (name := f"{stem}.jpg" if n == 1 else f"{stem}-{n}.jpg") in used:
            n += 1
        used.add(name)
        targets.append(target / name)
    return targets


def _sample_photos() -> list[str]:
    """The fetched sample photos, in manifest order: `edged detect` with no arguments is the demo."""
    from edged import paths
    from edged.detect.models import load_manifest

    directory = paths.samples_dir()
    photos = [directory / entry.file for entry in load_manifest().samples.files]
    present = [str(photo) for photo in photos if photo.is_file()]
    if not present:
        raise UnavailableError(f"no IMAGE given and no sample photos in {directory}: "
                               "run `edged models fetch samples`")
    return present


def load_image(path: str):
    """An image file as an RGB uint8 array; one-line errors for missing or undecodable files."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))
    except FileNotFoundError:
        raise NoInputError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise NoInputError(f"image {path} is a directory") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"image {path} cannot be decoded ({' '.join(str(exc).split())})") from None


def main(args: argparse.Namespace) -> int:
    import msgspec

    from edged.annotate import annotate
    from edged.detect.detector import Detector

    settings = _settings(args)
    args.images = args.images or _sample_photos()
    targets = annotation_targets(args.images, args.annotate)
    if args.annotate and len(args.images) > 1:
        Path(args.annotate).mkdir(parents=True, exist_ok=True)
    first_error = 0
    with Detector.open(settings) as detector:
        for image_path, target in zip(args.images, targets):
            try:
                image = load_image(image_path)
            except EdgedError as exc:
                print(f"edged detect: error: {exc}", file=sys.stderr)
                first_error = first_error or exc.exit_code
                continue
            result = detector.detect(image)
            height, width = image.shape[:2]
            if args.json:
                record = {"image": image_path, "width": width, "height": height, "backend": result.backend,
                          "model": detector.model_name, "inference_ms": result.inference_ms,
                          "detections": result.detections}
                sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
            else:
                print(f"{image_path} {width}x{height} {result.backend} {result.inference_ms:.1f} ms")
                for d in result.detections:
                    x0, y0, x1, y1 = d.box.to_pixels(width, height)
                    print(f"  {d.label:<14} {d.score:.3f}  ({x0}, {y0})-({x1}, {y1})")
                if not result.detections:
                    print(f"  nothing scored {settings.threshold} or more")
            sys.stdout.flush()
            if target is not None:
                try:
                    annotate(image, result.detections).save(target)
                except OSError as exc:
                    raise EdgedError(f"cannot write {target} ({exc})") from None
    return first_error
