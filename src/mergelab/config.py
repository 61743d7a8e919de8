"""Config loading and validation (JSON schema + semantic checks), with clear errors."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"

# Mini tasks whose generated images changed after the first generator (revision 1); the
# prepare_task rule's params carry the revision, so only a changed task and what depends on
# it rerun. Kept here, not in data.mini, so that parsing the workflow stays light.
MINI_TASK_REVISIONS = {"shapes": 2}  # 2: eight larger shapes (docs/mini_suite.md)


class ConfigError(ValueError):
    """The config is invalid; the message names the key."""


def _with_defaults(validator_class):
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _key_path(err: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in err.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a validated deep copy of ``config`` with defaults filled in.

    Raises ConfigError naming the offending key (schema errors first, then
    semantic checks: unknown tasks in suites, unknown methods, methods that do
    not support a regime, bad hyperparameters).
    """
    cfg = copy.deepcopy(dict(config))
    schema = load_schema()
    Validator = _with_defaults(jsonschema.Draft202012Validator)
    errors = sorted(Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors[:10]:
            msg = e.message
            if e.validator == "additionalProperties":
                msg = f"unknown key(s): {msg.split('(')[-1].rstrip(')')}"
            lines.append(f"  config key '{_key_path(e)}': {msg}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    _semantic_checks(cfg)
    return cfg


def _check_shipped_tag(model: dict[str, Any]) -> None:
    """The repo's own architectures have no open_clip tags: their pretrained tag must be shipped."""
    from . import shipped
    tag = model.get("pretrained")
    own_architecture = (shipped.CONFIG_DIR / f"{model['name']}.json").is_file()
    if tag and own_architecture and not shipped.is_shipped(model["name"], tag):
        raise ConfigError(f"config key 'model.pretrained': '{tag}' is not shipped for '{model['name']}' "
                          f"(shipped tags: {', '.join(shipped.shipped_tags()) or 'none'}; "
                          f"files in {shipped.WEIGHTS_DIR})")


def _semantic_checks(cfg: dict[str, Any]) -> None:
    """Checks the JSON schema cannot express: names that must refer to each other."""
    _check_task_sources(cfg["data"]["tasks"])
    _check_model(cfg["model"])
    _check_checkpoints(cfg)
    _check_suites(cfg)
    _check_methods(cfg)
    _check_analysis(cfg)
    _check_ablations(cfg)


def _check_task_sources(tasks: Mapping[str, Any]) -> None:
    from .data.prepare import task_source
    for name, task in tasks.items():
        src = task_source(task)
        if task.get("n_train") is not None and src != "mini":
            raise ConfigError(f"config key 'data.tasks.{name}.n_train': only for source 'mini' "
                              f"(the size of a '{src}' dataset is the dataset's)")
        if src == "mini":
            from .data.mini import MINI_TASKS
            if name not in MINI_TASKS:
                raise ConfigError(f"config key 'data.tasks.{name}': no mini task of that name "
                                  f"(available: {', '.join(sorted(MINI_TASKS))})")
        elif src == "hub" and not task.get("hub_id"):
            from .data import paper
            if name not in paper.HUB_TASKS:
                raise ConfigError(f"config key 'data.tasks.{name}.hub_id': required for source "
                                  "'hub' (no built-in hub id for this task)")
        elif src == "local" and not task.get("path"):
            raise ConfigError(f"config key 'data.tasks.{name}.path': required for source 'local'")


def _check_model(model: Mapping[str, Any]) -> None:
    if model.get("random_init") and model.get("pretrained"):
        raise ConfigError(f"config key 'model.random_init': true together with 'model.pretrained: "
                          f"{model['pretrained']}'; random init needs pretrained: null")
    _check_shipped_tag(model)
    if model.get("head_text_encoder") == "hf" and not model.get("hf_name"):
        raise ConfigError("config key 'model.head_text_encoder': 'hf' needs 'model.hf_name' (the "
                          "Hugging Face CLIPModel whose text tower builds the heads)")


def _check_checkpoints(cfg: Mapping[str, Any]) -> None:
    """An imported checkpoint replaces a task vector of a regime the run must have."""
    from .checkpoints import KIND_ALIASES, KIND_REGIME
    for name, task in cfg["data"]["tasks"].items():
        ck = task.get("checkpoint")
        if ck:
            regime = KIND_REGIME[KIND_ALIASES[ck["kind"]]]
            if regime not in cfg["regimes"]:
                raise ConfigError(f"config key 'data.tasks.{name}.checkpoint.kind': '{ck['kind']}' "
                                  f"imports a {regime}-regime task vector but 'regimes' is "
                                  f"{cfg['regimes']}")


def _check_suites(cfg: Mapping[str, Any]) -> None:
    tasks = cfg["data"]["tasks"]
    for suite, members in cfg["suites"].items():
        for t in members:
            if t not in tasks:
                raise ConfigError(f"config key 'suites.{suite}': unknown task '{t}' "
                                  f"(not under data.tasks: {', '.join(tasks)})")


def _check_methods(cfg: Mapping[str, Any]) -> None:
    from . import methods as M
    grid = cfg["evaluation"].get("alpha_grid")
    if grid is not None and not grid:
        raise ConfigError("config key 'evaluation.alpha_grid': empty α grid")
    for inst, spec in cfg["methods"].items():
        try:
            cls = M.get_method(spec["method"])
        except KeyError as exc:
            raise ConfigError(f"config key 'methods.{inst}.method': {exc}") from None
        try:
            cls(**spec.get("params", {}))  # checked against the method's declared parameters
        except (ValueError, TypeError) as exc:
            param = getattr(exc, "param", None)
            key = f"methods.{inst}.params" + (f".{param}" if param else "")
            raise ConfigError(f"config key '{key}': {exc}") from None
        for r in spec.get("regimes") or []:
            if r not in cls.regimes:
                raise ConfigError(f"config key 'methods.{inst}.regimes': method "
                                  f"'{spec['method']}' does not support regime '{r}'")
        if inst in ("zeroshot", "individual"):
            raise ConfigError(f"config key 'methods.{inst}': '{inst}' is a reserved row name")
        _check_init_source(cfg, inst)


def _check_analysis(cfg: Mapping[str, Any]) -> None:
    from . import methods as M
    an = cfg.get("analysis", {})
    if an.get("suite") is not None and an["suite"] not in cfg["suites"]:
        raise ConfigError(f"config key 'analysis.suite': unknown suite '{an['suite']}'")
    for m in an.get("similarity_methods", []):
        if m not in cfg["methods"]:
            raise ConfigError(f"config key 'analysis.similarity_methods': unknown method instance '{m}'")
    for name, sw in an.get("sweeps", {}).items():
        if sw["base"] not in cfg["methods"]:
            raise ConfigError(f"config key 'analysis.sweeps.{name}.base': unknown method instance "
                              f"'{sw['base']}'")
        if name in cfg["methods"]:
            raise ConfigError(f"config key 'analysis.sweeps.{name}': clashes with a method instance")
        if sw.get("labels") and len(sw["labels"]) != len(sw["values"]):
            raise ConfigError(f"config key 'analysis.sweeps.{name}.labels': one label per value")
        cls = M.get_method(cfg["methods"][sw["base"]]["method"])
        for v in sw["values"]:
            try:
                cls(**{**cfg["methods"][sw["base"]].get("params", {}), sw["param"]: v})
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"config key 'analysis.sweeps.{name}.values': {exc}") from None


def _check_ablations(cfg: Mapping[str, Any]) -> None:
    """The generalization and task-count ablations, and the report's main suite."""
    tasks = cfg["data"]["tasks"]
    gen = cfg.get("generalization") or {}
    if gen.get("heldout"):
        gsuite = gen.get("suite") or cfg.get("report", {}).get("main_suite") or next(iter(cfg["suites"]))
        if gsuite not in cfg["suites"]:
            raise ConfigError(f"config key 'generalization.suite': unknown suite '{gsuite}'")
        for t in gen["heldout"]:
            if t not in tasks:
                raise ConfigError(f"config key 'generalization.heldout': unknown task '{t}' "
                                  "(not under data.tasks)")
            if t in cfg["suites"][gsuite]:
                raise ConfigError(f"config key 'generalization.heldout': task '{t}' is merged "
                                  f"in suite '{gsuite}'")
    tc = cfg.get("task_count") or {}
    for key, block in (("generalization", gen), ("task_count", tc)):
        for m in block.get("methods") or []:
            if m not in cfg["methods"]:
                raise ConfigError(f"config key '{key}.methods': unknown method instance '{m}'")
    for s in tc.get("suites") or []:
        if s not in cfg["suites"]:
            raise ConfigError(f"config key 'task_count.suites': unknown suite '{s}'")
    rs = cfg.get("report", {}).get("main_suite")
    if rs is not None and rs not in cfg["suites"]:
        raise ConfigError(f"config key 'report.main_suite': unknown suite '{rs}'")


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return validate_config(raw)


def sweep_instances(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Method instances generated by analysis sweeps: ``<sweep>_<i>`` -> spec (+ sweep info)."""
    out = {}
    for name, sw in cfg.get("analysis", {}).get("sweeps", {}).items():
        base = cfg["methods"][sw["base"]]
        for i, v in enumerate(sw["values"]):
            spec = copy.deepcopy(base)
            spec["params"] = {**base.get("params", {}), sw["param"]: v}
            spec["sweep"] = {"name": name, "index": i, "value": v,
                             "label": (sw.get("labels") or [None] * len(sw["values"]))[i]}
            out[f"{name}_{i}"] = spec
    return out


def init_source(cfg: Mapping[str, Any], inst: str) -> str | None:
    """The method instance whose validated α starts ``inst``'s coefficients
    (``init: from_method``; MDA AM's default: ``mda``), or None."""
    from . import methods as M
    spec = cfg["methods"][inst] if inst in cfg["methods"] else all_method_instances(cfg)[inst]
    params = M.build(spec["method"], **spec.get("params", {})).params
    return params.get("init_method") if params.get("init") == "from_method" else None


def _check_init_source(cfg: Mapping[str, Any], inst: str) -> None:
    src = init_source(cfg, inst)
    if src is None:
        return
    key = f"methods.{inst}.params.init_method"
    if src not in cfg["methods"] or src == inst:
        raise ConfigError(f"config key '{key}': '{src}' is not another method instance of "
                          f"methods (init: from_method starts λ at that instance's validated α)")
    missing = set(method_regimes(cfg, inst)) - set(method_regimes(cfg, src))
    if missing:
        raise ConfigError(f"config key '{key}': '{src}' does not run in regime(s) "
                          f"{sorted(missing)} where '{inst}' runs")
    if _has_fixed_alpha(cfg, src):
        raise ConfigError(f"config key '{key}': '{src}' has the fixed α grid [1.0]; its α says "
                          f"nothing (choose a method whose α is validated)")


def _has_fixed_alpha(cfg: Mapping[str, Any], inst: str) -> bool:
    from . import methods as M
    spec = cfg["methods"][inst]
    return not spec.get("alpha_grid") and M.get_method(spec["method"]).alpha_grid == "fixed1"


def all_method_instances(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {**cfg["methods"], **sweep_instances(cfg)}


def method_regimes(cfg: Mapping[str, Any], inst: str) -> list[str]:
    """Regimes in which method instance ``inst`` runs."""
    from . import methods as M
    spec = all_method_instances(cfg)[inst]
    supported = M.get_method(spec["method"]).regimes
    wanted = spec.get("regimes") or list(cfg["regimes"])
    return [r for r in cfg["regimes"] if r in wanted and r in supported]


def alpha_grid(cfg: Mapping[str, Any], inst: str) -> list[float]:
    from . import methods as M
    spec = all_method_instances(cfg)[inst]
    if spec.get("alpha_grid"):
        return list(spec["alpha_grid"])
    if cfg["evaluation"].get("alpha_grid") and M.get_method(spec["method"]).alpha_grid != "fixed1":
        return list(cfg["evaluation"]["alpha_grid"])
    return M.get_method(spec["method"]).grid()
