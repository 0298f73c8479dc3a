"""`edged models list | fetch | add | remove`: what the manifests offer, what is here and verified,
getting the rest, and adding your own.

`fetch` with no names gets the default model and the sample photos — enough for
every command to work offline afterwards. The Edge TPU build is fetched too
when an Edge TPU is attached (or with `--variant edgetpu`). Mirrors (`--mirror`,
repeatable, default $EDGED_MIRROR) are tried before the official URLs. `add`
vets a model of your own and pins it in the local manifest (edged/local_models/),
after which every command takes its name like a zoo model's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    add = actions.add_parser("add", help="vet a model of your own and add it by name",
                             description="Check a .tflite model (kind, input, outputs, label count, Edge TPU "
                             "build), copy it into the data dir and pin it by SHA-256 in the local manifest; "
                             "then `--model NAME` works in every command. The same files again: no change.")
    add.add_argument("name", metavar="NAME", help="the name to use it by (not a built-in model's)")
    add.add_argument("--file", required=True, type=Path, metavar="MODEL.tflite", help="the CPU build")
    add.add_argument("--labels", required=True, type=Path, metavar="LABELS.txt",
                     help="one label per line, line index = class id")
    add.add_argument("--edgetpu", type=Path, metavar="MODEL_edgetpu.tflite",
                     help="its edgetpu_compiler build (used on a Coral; the CPU build is the fallback)")
    add.add_argument("--anchors", type=Path, metavar="ANCHORS.npy",
                     help="float32 [N, 4] anchors of a raw SSD detector (no post-process op)")
    add.add_argument("--kind", choices=["detector", "classifier", "segmenter"],
                     help="what the model must be (default: what its outputs say)")
    add.add_argument("--title", help="a one-line description for `edged models list`")
    add.add_argument("--replace", action="store_true", help="replace a local model of that name")
    remove = actions.add_parser("remove", help="remove a model added with `edged models add`",
                                description="Forget a local model and delete its files (none of that name: "
                                "nothing to do, exit 0).")
    remove.add_argument("name", metavar="NAME")


def _size(value: int | None) -> str:
    return f"{value / 1e6:.1f} MB" if value else "?"


def _list() -> int:
    from edged import paths
    from edged.detect.catalog import load_local, local_files_dir
    from edged.detect.models import file_state, load_manifest
    from edged.local_models.store import pins

    manifest = load_manifest()
    models_dir, samples_dir = paths.models_dir(), paths.samples_dir()
    try:
        local = load_local(models_dir).models
    except EdgedError as exc:  # the built-in models are still listed
        print(f"edged models list: error: {exc}", file=sys.stderr)
        local = {}
    defaults = {manifest.default_for(kind) for kind in ("detector", "classifier", "segmenter")}
    rows = [(name, model, "built-in", models_dir) for name, model in manifest.models.items()]
    rows += [(name, model, "local", local_files_dir(models_dir)) for name, model in local.items()]
    width = max(len(name) for name, *_ in rows) + 2
    print(f"models in {models_dir}, samples in {samples_dir}")
    print(f"{'NAME':<{width}} {'KIND':<10} {'VARIANT':<8} {'STATE':<9} {'SIZE':>8}  {'SOURCE':<8}  FILE")
    for name, model, source, directory in rows:
        label, kind = name + (" *" if name in defaults else ""), model.kind
        labels_pin = [pin for pin in pins(model)[:1] if source == "local"]
        for variant_name, variant in model.variants().items():
            states = [file_state(directory / entry.file, entry) for entry in [*labels_pin, *variant.files()]]
            state = next((s for s in ("mismatch", "missing") if s in states), "verified")
            path = directory / variant.file
            size = path.stat().st_size if path.exists() else variant.size
            extra = " (not official: mirror only)" if variant.url is None and source == "built-in" else ""
            print(f"{label:<{width}} {kind:<10} {variant_name:<8} {state:<9} {_size(size):>8}  {source:<8}  "
                  f"{variant.file}{extra}")
            label = kind = ""
    states = [file_state(samples_dir / entry.file, entry) for entry in manifest.samples.files]
    verified = states.count("verified")
    print(f"{'samples':<{width}} {'':<10} {'photos':<8} {f'{verified}/{len(states)}':<9} "
          f"{_size(sum(e.size or 0 for e in manifest.samples.files)):>8}  {'built-in':<8}  "
          + ", ".join(e.file for e in manifest.samples.files))
    print("* default of its kind (what `edged detect`, `classify`, `segment` run without --model); "
          "fetch with `edged models fetch [NAME…] [--variant cpu|edgetpu|raw|all]`; "
          "add your own with `edged models add NAME --file … --labels …`")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from edged import paths
    from edged.detect import fetch
    from edged.detect.backends import edgetpu_attached
    from edged.detect.catalog import load_local
    from edged.detect.models import SAMPLES, VARIANTS, load_manifest

    manifest = load_manifest()
    names = args.names or [manifest.default_model, SAMPLES]
    unknown = [name for name in names if name != SAMPLES and name not in manifest.models]
    local = set(unknown) & set(load_local(paths.models_dir()).models) if unknown else set()
    for name in local:
        print(f"{name}: a local model (`edged models add`): its files are here or nowhere, nothing to fetch")
    names = [name for name in names if name not in local]
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


def _add(args: argparse.Namespace) -> int:
    from edged import paths
    from edged.local_models import store
    from edged.local_models.vetting import Submission, vet

    store.check_name(args.name)  # before the model is loaded: a bad name is the cheaper line
    submission = Submission(args.file, args.labels, args.edgetpu, args.anchors, args.kind)
    vetted = vet(submission)
    added = store.add(args.name, submission, vetted, paths.models_dir(), title=args.title,
                      replace=args.replace)
    variants = ", ".join(added.entry.variants())
    print(f"{args.name}: {added.outcome} ({vetted.describe()}; {variants}) in {added.directory}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from edged import paths
    from edged.local_models import store

    if store.remove(args.name, paths.models_dir()):
        print(f"{args.name}: removed")
    else:
        print(f"{args.name}: no local model of that name, nothing removed")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    return {"fetch": _fetch, "add": _add, "remove": _remove}[args.action](args)
