"""`edged models list | fetch`: what the manifest offers, what is here and verified, and getting the rest.

`fetch` with no names gets the default model and the sample photos — enough for
every command to work offline afterwards. The Edge TPU build is fetched too
when an Edge TPU is attached (or with `--variant edgetpu`). Mirrors (`--mirror`,
repeatable, default $EDGED_MIRROR) are tried before the official URLs.
"""

from __future__ import annotations

import argparse
import sys

from edged.errors import EdgedError


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="models and sample photos: variants, local state, size",
                       description="List the manifest's models and whether their files are here and verified.")
    fetch = actions.add_parser("fetch", help="download and verify models and sample photos",
                               description="Download (mirrors first, then official URLs), verify against the "
                               "manifest's pins and install atomically. No NAME: the default model and samples.")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="model names, or `samples` for the sample photos")
    fetch.add_argument("--variant", action="append", choices=["cpu", "edgetpu", "raw", "all"],
                       help="which files of each model (repeatable; default: cpu, plus edgetpu when an "
                       "Edge TPU is attached)")
    fetch.add_argument("--mirror", action="append", metavar="DIR|URL",
                       help="a directory or http(s) URL holding the files by name (repeatable, tried in "
                       "order; default: $EDGED_MIRROR, colon-separated)")
    fetch.add_argument("--offline", action="store_true", help="use only the mirrors, never the official URLs")


def _size(value: int | None) -> str:
    return f"{value / 1e6:.1f} MB" if value else "?"


def _list() -> int:
    from edged import paths
    from edged.detect.models import file_state, load_manifest

    manifest = load_manifest()
    models_dir, samples_dir = paths.models_dir(), paths.samples_dir()
    defaults = {manifest.default_for(kind) for kind in ("detector", "classifier", "segmenter")}
    width = max(len(name) for name in manifest.models) + 2
    print(f"models in {models_dir}, samples in {samples_dir}")
    print(f"{'NAME':<{width}} {'KIND':<10} {'VARIANT':<8} {'STATE':<9} {'SIZE':>8}  FILE")
    for name, model in manifest.models.items():
        label, kind = name + (" *" if name in defaults else ""), model.kind
        for variant_name, variant in model.variants().items():
            states = [file_state(models_dir / entry.file, entry) for entry in variant.files()]
            state = next((s for s in ("mismatch", "missing") if s in states), "verified")
            path = models_dir / variant.file
            size = path.stat().st_size if path.exists() else variant.size
            extra = " (not official: mirror only)" if variant.url is None else ""
            print(f"{label:<{width}} {kind:<10} {variant_name:<8} {state:<9} {_size(size):>8}  "
                  f"{variant.file}{extra}")
            label = kind = ""
    states = [file_state(samples_dir / entry.file, entry) for entry in manifest.samples.files]
    verified = states.count("verified")
    print(f"{'samples':<{width}} {'':<10} {'photos':<8} {f'{verified}/{len(states)}':<9} "
          f"{_size(sum(e.size or 0 for e in manifest.samples.files)):>8}  "
          + ", ".join(e.file for e in manifest.samples.files))
    print("* default of its kind (what `edged detect`, `classify`, `segment` run without --model); "
          "fetch with `edged models fetch [NAME…] [--variant cpu|edgetpu|raw|all]`")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from edged import paths
    from edged.detect import fetch
    from edged.detect.backends import edgetpu_attached
    from edged.detect.models import SAMPLES, VARIANTS, load_manifest

    names = args.names or [load_manifest().default_model, SAMPLES]
    if args.variant:
        variants = list(VARIANTS) if "all" in args.variant else list(dict.fromkeys(args.variant))
    else:
        variants = ["cpu", "edgetpu"] if edgetpu_attached() else ["cpu"]
    mirrors = args.mirror if args.mirror else fetch.mirrors_from_env()
    steps = fetch.plan(names, variants, models_dir=paths.models_dir(), samples_dir=paths.samples_dir(),
                       strict=bool(args.variant) and "all" not in args.variant)
    first_error = 0
    for what, entry, directory in steps:
        try:
            path, origin = fetch.fetch_file(entry, directory, mirrors, offline=args.offline)
        except EdgedError as exc:
            print(f"edged models fetch: error: {exc}", file=sys.stderr)
            first_error = first_error or exc.exit_code
            continue
        status = "already verified" if origin == "present" else f"verified, from {origin}"
        print(f"{what}: {path} ({status})")
    return first_error


def main(args: argparse.Namespace) -> int:
    return _list() if args.action == "list" else _fetch(args)
