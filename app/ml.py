"""``crypto-intel ml``: train XGBoost up/down classifiers on the engine's features with walk-forward
evaluation (as Ray tasks), and list, promote and roll back versions in the model registry."""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from app import flags
from app.inputs import CommandLineError, load_inputs
from schemas.json_safe import json_safe

ACTIONS = ("train", "list", "promote", "rollback")
DEFAULT_NAME = "xgb"


def add_ml_parser(sub) -> None:
    ml = sub.add_parser(
        "ml", help="train XGBoost models on the features (walk-forward, on Ray); list, promote, roll back versions",
        description="ml train fits an up/down classifier per market or pooled over markets on the engine's "
                    "point-in-time features, evaluates it walk-forward on held-out folds (purged, embargoed) and "
                    "registers it; ml list | promote NAME VERSION | rollback NAME manage the registry (files under "
                    "--registry, and the models table when DATABASE_URL is set).")
    msub = ml.add_subparsers(dest="ml_command", required=True, metavar="ACTION")
    reg_help = "registry directory (default $CRYPTO_INTEL_MODELS_DIR or data/models)"

    tr = msub.add_parser("train", help="train, evaluate walk-forward and register a model",
                         description="Compute the features of --input, label each bar, evaluate walk-forward on "
                                     "--folds held-out windows, fit the final model on every labelled row and "
                                     "register it (per market with --per-market: one model per market).")
    tr.add_argument("--input", nargs="+", required=True, help="Parquet, CSV or Feather files of trades or candles")
    tr.add_argument("--label", choices=["sign", "triple-barrier"], default="sign",
                    help="sign of the forward return over --horizon (default), or the triple barrier of an ATR "
                         "stop and target within --horizon bars")
    tr.add_argument("--horizon", type=flags.positive_int, default=12, help="bars the label looks ahead (default 12)")
    tr.add_argument("--k-up", type=flags.positive_float, default=2.0, help="triple-barrier target in ATRs (default 2)")
    tr.add_argument("--k-dn", type=flags.positive_float, default=2.0, help="triple-barrier stop in ATRs (default 2)")
    tr.add_argument("--per-market", action="store_true", help="one model per market (default: one pooled model)")
    tr.add_argument("--folds", type=flags.positive_int, default=4, help="walk-forward test windows (default 4)")
    tr.add_argument("--embargo", type=flags.non_negative_int, default=0,
                    help="bars after each test window left out of training (default 0; only kfold trains on later bars)")
    tr.add_argument("--scheme", choices=["walk-forward", "kfold"], default="walk-forward",
                    help="walk-forward: train on the past of each test window (default); kfold: on every other window")
    tr.add_argument("--holdout", type=flags.fraction(zero=True), default=0.2,
                    help="last fraction of the bars kept out of every fold and the final model, on which the "
                         "registered model is scored (default 0.2; 0: none, the final model sees every bar)")
    tr.add_argument("--rounds", type=flags.positive_int, default=200, help="boosting rounds (default 200)")
    tr.add_argument("--max-depth", type=flags.positive_int, default=4, help="tree depth (default 4)")
    tr.add_argument("--eta", type=flags.positive_float, default=0.05, help="learning rate (default 0.05)")
    tr.add_argument("--seed", type=flags.non_negative_int, default=0, help="random seed (default 0)")
    tr.add_argument("--nthread", type=flags.positive_int, default=1, help="XGBoost threads per job (default 1)")
    tr.add_argument("--task-cpus", type=flags.positive_float, default=None,
                    help="logical CPUs each Ray task asks for, fractions allowed (default: --nthread)")
    tr.add_argument("--timeframe", default=None, type=flags.timeframe,
                    help="bar length built from trades (default 1m; candle files keep their own)")
    tr.add_argument("--ray-address", default=None,
                    help="Ray cluster address (auto: the running one; default: $RAY_ADDRESS as `ray job submit` "
                         "sets it, else a local Ray started for the run)")
    tr.add_argument("--serial", action="store_true", help="train in this process, not as Ray tasks")
    tr.add_argument("--name", default=DEFAULT_NAME, help=f"registry name (default {DEFAULT_NAME}; per market: "
                                                         f"NAME-MARKET)")
    tr.add_argument("--registry", default=None, help=reg_help)
    tr.add_argument("--promote", action="store_true", help="promote the new version(s) to production")
    tr.add_argument("--market", default=None, help="market name for single-market files without a symbol column")
    tr.add_argument("--columns", default=None, metavar="FIELD=COLUMN,...", help="rename input columns")
    tr.set_defaults(func=cmd_train)

    ls = msub.add_parser("list", help="the registered versions, as a table")
    ls.add_argument("name", nargs="?", default=None, help="only this model")
    ls.add_argument("--registry", default=None, help=reg_help)
    ls.set_defaults(func=cmd_list)

    pr = msub.add_parser("promote", help="make a version the production one")
    pr.add_argument("name")
    pr.add_argument("version", help="e.g. v3")
    pr.add_argument("--registry", default=None, help=reg_help)
    pr.set_defaults(func=cmd_promote)

    rb = msub.add_parser("rollback", help="go back to the previously promoted version")
    rb.add_argument("name")
    rb.add_argument("--registry", default=None, help=reg_help)
    rb.set_defaults(func=cmd_rollback)


def _key_name(name: str, market: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in market)
    return f"{name}-{safe}"


def cmd_train(args) -> int:
    from engine.features import feature_frame
    from engine.models.labels import LabelSpec
    from engine.models.train import jobs_of
    from engine.models.xgb import TrainSpec
    from engine.progress import Progress
    from schemas.timeframes import format_timeframe

    reg = flags.registry(args.registry)
    if args.ray_address is not None and args.serial:
        raise CommandLineError("--ray-address and --serial exclude each other")
    label_spec = LabelSpec(args.label, args.horizon, args.k_up, args.k_dn)
    spec = TrainSpec(params={"max_depth": args.max_depth, "eta": args.eta}, rounds=args.rounds, seed=args.seed,
                     nthread=args.nthread)
    inputs = load_inputs(args.input, args.market, args.columns)
    config = None
    if args.timeframe:
        from engine.config import PipelineConfig
        config = PipelineConfig(timeframes=(args.timeframe,))
    total = sum(len(b) for b in inputs)
    progress = Progress(total, "features")
    t0 = time.perf_counter()
    feats = feature_frame(inputs, config, progress=progress.advance)
    progress.done = total
    progress.draw()
    progress.close()
    if not len(feats):
        raise CommandLineError("--input: no closed bars to compute features over")
    jobs = jobs_of(feats, label_spec, spec, args.folds, args.embargo, args.scheme, args.per_market, args.holdout)
    print(f"features: {len(feats):,} bars x {len(feats.names)} features of {len(feats.markets)} market(s) in "
          f"{time.perf_counter() - t0:.1f}s; {len(jobs)} training job(s), {args.folds} folds each", file=sys.stderr)
    steps = sum(j.folds + 1 for j in jobs)
    progress = Progress(steps, "train")
    t1 = time.perf_counter()
    if args.serial:
        from actors.ml_train import train_serial
        results = train_serial(jobs, progress.advance)
    else:
        results = _train_ray(args, jobs, progress.advance)
    progress.done = steps
    progress.draw()
    progress.close()
    elapsed = time.perf_counter() - t1
    tfs = sorted({int(t) for t in np.unique(feats.candles.tf)})
    timeframe = ",".join(format_timeframe(t) for t in tfs)
    print(f"trained {len(results)} job(s) in {elapsed:.1f}s ({'serial' if args.serial else 'ray'})", file=sys.stderr)
    for r in results:
        name = args.name if r.key == "pooled" else _key_name(args.name, r.key)
        job = next(j for j in jobs if j.key == r.key)
        markets = sorted({feats.markets[i] for i in np.unique(feats.market)}) if r.key == "pooled" else [r.key]
        data_hash = _data_hash(job)
        params = {"features": list(feats.names), "timeframe": timeframe, "label": label_spec.describe(),
                  "markets": markets, "train": spec.describe(), "folds": args.folds, "embargo": args.embargo,
                  "scheme": args.scheme, "holdout": args.holdout}
        metrics = {"held_out": r.held_out, "holdout": r.holdout, "folds": r.folds, "importance": r.importance,
                   "rows": r.rows}
        info = reg.register(name=name, kind="xgboost", files={"model.ubj": r.model}, metrics=json_safe(metrics),
                            features=list(feats.names), window=r.window, data_hash=data_hash, params=params)
        if args.promote:
            info = reg.promote(name, info.version)
        _print_result(r, info)
    return 0


def _train_ray(args, jobs, progress):
    from actors.ml_train import train_on_ray
    from app.ray_session import ray_session
    with ray_session(args.ray_address):
        return train_on_ray(jobs, args.task_cpus, progress)


def _data_hash(job) -> str:
    import hashlib
    h = hashlib.sha256()
    h.update(",".join(job.names).encode())
    for a in (job.X, job.y, job.close_ts, job.end_ts):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _f(v, fmt: str = ".4f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _print_result(r, info) -> None:
    h = r.held_out
    print(f"{info.name} {info.version} ({info.stage}): {r.rows:,} labelled rows; held out over {len(r.folds)} "
          f"folds ({h['rows']:,} rows, {_f(h['positive_rate'], '.1%')} up): AUC {_f(h['auc'])}, "
          f"log loss {_f(h['log_loss'])}, precision at top decile {_f(h['precision_top_decile'])} -> {info.path}")
    for f in r.folds:
        print(f"  fold {f['fold']}: train {f['train_rows']:,} (purged {f['purged']}, embargoed {f['embargoed']}), "
              f"test {f['test_rows']:,}: AUC {_f(f['auc'])}, log loss {_f(f['log_loss'])}, "
              f"top decile {_f(f['precision_top_decile'])}")
    cal = " ".join(f"{c['mean_predicted']:.2f}->{c['fraction_positive']:.2f}({c['count']})" for c in h["calibration"])
    print(f"  calibration (predicted->observed(rows)): {cal}")
    o = r.holdout
    if o:
        print(f"  holdout (the registered model, last {o['rows']:,} rows, {_f(o['positive_rate'], '.1%')} up, "
              f"{o['purged']} purged before it): AUC {_f(o['auc'])}, log loss {_f(o['log_loss'])}, "
              f"precision at top decile {_f(o['precision_top_decile'])}")
    top = list(r.importance.items())[:8]
    print("  importance (gain): " + ", ".join(f"{k} {v:.3g}" for k, v in top))


def cmd_list(args) -> int:
    reg = flags.registry(args.registry, write=False)
    rows = reg.list(args.name)
    if not rows:
        print(f"no models in {reg.root}", file=sys.stderr)
        return 0
    header = ("NAME", "VERSION", "KIND", "STAGE", "CREATED", "ROWS", "WF_AUC", "HOLDOUT_AUC", "HOLDOUT_LOGLOSS",
              "HOLDOUT_TOP10%", "DATA")
    table = [header]
    for i in rows:
        m = i.metrics or {}
        h, o = m.get("held_out") or {}, m.get("holdout") or {}
        table.append((i.name, i.version, i.kind, i.stage, i.created_at[:19], str(m.get("rows", "")), _f(h.get("auc")),
                      _f(o.get("auc")), _f(o.get("log_loss")), _f(o.get("precision_top_decile")), i.data_hash[:12]))
    widths = [max(len(str(r[c])) for r in table) for c in range(len(header))]
    for r in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def cmd_promote(args) -> int:
    info = flags.registry(args.registry).promote(args.name, args.version)
    print(f"{info.name} {info.version} is in production")
    return 0


def cmd_rollback(args) -> int:
    info = flags.registry(args.registry).rollback(args.name)
    print(f"{info.name} rolled back to {info.version}")
    return 0
