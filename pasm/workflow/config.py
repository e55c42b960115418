"""Load and validate the workflow configuration once, at the edge: JSON schema plus defaults."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pasm.data.labels import CLASSES


class ConfigError(ValueError):
    """A configuration value is missing, misspelled, of the wrong type or out of range."""


# The schema lives beside the configs it checks (config/), in the repository the package is installed from.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return the config schema with its local $refs inlined (so defaults behind $ref apply)."""
    text = Path(path).read_text()
    schema = yaml.safe_load(text)
    definitions = schema.get("definitions", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                return inline(copy.deepcopy(definitions[ref.rsplit("/", 1)[1]]))
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    body = {k: v for k, v in schema.items() if k != "definitions"}
    return inline(body)


def _default_filling_validator() -> type:
    """A Draft-7 validator class that inserts schema defaults for absent properties."""
    base = jsonschema.Draft7Validator
    validate_properties = base.VALIDATORS["properties"]

    def fill_then_validate(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if name not in instance and isinstance(sub, dict) and "default" in sub:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": fill_then_validate})


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _weights_errors(key: str, model: dict[str, Any]) -> list[str]:
    """ImageNet weights asked for an arch without them, or missing on this machine (checked before any
    job)."""
    if model["pretrained"] != "imagenet":
        return []
    if model["arch"] == "compact":
        return [f"{key}.pretrained: the compact CNN has no ImageNet weights; use pretrained: none"]
    from pasm.nn.models import imagenet_weights_file

    cached, url = imagenet_weights_file(model["arch"])
    path = Path(model["weights_file"]) if model["weights_file"] else cached
    if path.is_file():
        return []
    return [
        f"{key}.pretrained: ImageNet weights for {model['arch']} not found at {path}. Download {url} on a "
        f"machine with internet and copy it to {cached}, or set {key}.weights_file to its path"
    ]


def _semantic_errors(cfg: dict[str, Any]) -> list[str]:
    """Checks a schema cannot express: cross-key consistency."""
    errors = []
    for name, ds in cfg["datasets"].items():
        for phase in ("pretrain", "finetune"):
            tr = ds[phase]
            bad = [m for m in tr["lr_milestones"] if m > tr["epochs"]]
            if bad:
                errors.append(f"datasets.{name}.{phase}.lr_milestones: {bad} exceed epochs={tr['epochs']}")
        if ds["model"]["arch"] == "compact" and ds["image_size"] < 16:
            errors.append(f"datasets.{name}.image_size: too small for the compact CNN")
        errors += _weights_errors(f"datasets.{name}.model", ds["model"])
        if cfg["method"]["rounds"] == "auto" and not ds["val_split"]:
            errors.append(
                f"datasets.{name}.val_split: method.rounds 'auto' decides on validation accuracy, "
                "so every data set needs a val_split"
            )
    if "cross_network" in cfg["method"]["ablation"]["variants"]:
        errors += _weights_errors("method.ablation.cross_network", cfg["method"]["ablation"]["cross_network"])
    for name, ds in cfg["datasets"].items():
        mask = effective_mask_size(cfg, name)
        key = f"datasets.{name}.mask_size" if ds["mask_size"] else "method.mask_size"
        if mask > ds["image_size"]:
            errors.append(f"{key}: {mask} is larger than datasets.{name}.image_size={ds['image_size']}")
        for target in ds["cross_eval"]:
            if target not in cfg["datasets"] or target == name:
                errors.append(f"datasets.{name}.cross_eval: {target!r} is not another configured data set")
        ck = ds["ckplus"]
        if ck["test_fold"] >= ck["folds"]:
            errors.append(
                f"datasets.{name}.ckplus.test_fold: {ck['test_fold']} is not below folds={ck['folds']}"
            )
        if ck["val_fold"] is not None and (
            ck["val_fold"] >= ck["folds"] or ck["val_fold"] == ck["test_fold"]
        ):
            errors.append(
                f"datasets.{name}.ckplus.val_fold: {ck['val_fold']} must be below folds "
                "and differ from test_fold"
            )
        for block in ("ckplus", "affectnet", "fer2013"):
            contempt = ds[block]["contempt"]
            if contempt != "drop" and contempt not in CLASSES:
                errors.append(
                    f"datasets.{name}.{block}.contempt: {contempt!r} is neither 'drop' nor one of "
                    f"{list(CLASSES)}"
                )
    return errors


def _root_errors(cfg: dict[str, Any]) -> list[str]:
    """Data roots, RAF-DB list files and FER+ vote files that do not exist, relative to the working
    directory (the directory Snakemake runs in): the run would otherwise stop later, or reuse faces
    built before. The demo's root is exempt: the workflow generates it."""
    from pasm.data.readers.rafdb import resolve_list_path

    errors = []
    where = f"(paths are relative to {Path.cwd()}, where snakemake runs)"
    for name, ds in cfg["datasets"].items():
        root = Path(ds["root"])
        if ds["format"] != "demo" and not root.exists():
            errors.append(f"datasets.{name}.root: {ds['root']} does not exist {where}")
        ferplus = ds["fer2013"]["ferplus"]
        if ds["format"] == "fer2013" and ferplus and not Path(ferplus).exists():
            errors.append(f"datasets.{name}.fer2013.ferplus: {ferplus} does not exist {where}")
        if ds["format"] != "rafdb":
            continue
        for key in ("occlusion_list", "pose30_list", "pose45_list"):
            given = ds["rafdb"][key]
            if given and resolve_list_path(given, root) is None:
                errors.append(
                    f"datasets.{name}.rafdb.{key}: neither {given} nor {root / given} exists {where}"
                )
    return errors


def effective_mask_size(cfg: dict[str, Any], name: str) -> int:
    """The mask side S for data set `name`: its own mask_size, else method.mask_size."""
    return cfg["datasets"][name]["mask_size"] or cfg["method"]["mask_size"]


def validate_config(
    config: dict[str, Any], source: str = "config", check_paths: bool = False
) -> dict[str, Any]:
    """Validate a config mapping and return a copy with every default filled in.

    check_paths: also require every data root (and RAF-DB list file) to exist, relative to the
    current directory; the workflow does so, before any job. Raises ConfigError listing every
    problem, each prefixed by its dotted key path.
    """
    cfg = copy.deepcopy(dict(config))
    validator = _default_filling_validator()(load_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [f"{_key_path(e)}: {e.message}" for e in errors]
    if not lines:
        lines = _semantic_errors(cfg) + (_root_errors(cfg) if check_paths else [])
    if lines:
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines))
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {path}: the top level must be a mapping, got {type(data).__name__}")
    return validate_config(data, source=str(path))


def reader_options(ds: dict[str, Any]) -> dict[str, Any]:
    """The keyword options of a data set's reader, taken from its config block.

    FER2013 without ferplus gets none, as before the fer2013 block existed: contempt means nothing
    there, and unchanged options keep Snakemake from rebuilding faces.h5 built before.
    """
    fmt = ds["format"]
    if fmt in ("demo", "folder"):
        return {"class_map": ds["class_map"]}
    if fmt in ("rafdb", "ckplus", "affectnet"):
        return dict(ds[fmt])
    if fmt == "fer2013" and ds["fer2013"]["ferplus"]:
        return dict(ds["fer2013"])
    return {}
