"""``crypto-intel rl``: train a stable-baselines3 policy on the trading environment as a Ray task (checkpoints,
resume, held-out evaluation, registry export), sweep rewards and their parameters (one Ray task per
combination, ranked on the same held-out bars) and print the held-out comparison table of a registered policy."""

from __future__ import annotations

import json
from pathlib import Path

from app import flags
from app.inputs import CommandLineError, check_input_file
from schemas.json_safe import json_safe

DEFAULT_NAME = "policy"


def add_rl_parser(sub) -> None:
    rl = sub.add_parser(
        "rl", help="train an RL trading policy (as a Ray task), sweep its rewards and evaluate it on held-out bars",
        description="rl train fits a stable-baselines3 policy on the crypto_intel/Trading-v0 environment over the "
                    "engine's features (the backtest broker books every action), evaluates it on the final "
                    "--eval-fraction of the bars against buy and hold, random actions and the rule strategies, and "
                    "registers it as kind rl_policy; rl sweep trains one policy per combination of a reward grid "
                    "(Ray tasks in parallel) and ranks them on the same held-out bars; rl evaluate prints that "
                    "comparison for a registered version.")
    rsub = rl.add_subparsers(dest="rl_command", required=True, metavar="ACTION")
    reg_help = "registry directory (default $CRYPTO_INTEL_MODELS_DIR or data/models)"

    tr = rsub.add_parser("train", help="train, evaluate on held-out bars and register a policy")
    _add_training_args(tr, task_cpus=1.0, what="the training task")
    tr.add_argument("--reward", default="pnl", help="pnl (default), differential_sharpe (dsr) or drawdown")
    tr.add_argument("--reward-params", default="", metavar="K=V,...", help="reward parameters, e.g. eta=0.01")
    tr.add_argument("--checkpoint-dir", default=None, help="save checkpoints here (rl_model_<steps>_steps.zip)")
    tr.add_argument("--checkpoint-every", type=flags.positive_int, default=5_000,
                    help="steps between checkpoints (default 5000)")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir "
                                                          "up to --timesteps in all")
    tr.add_argument("--name", default=DEFAULT_NAME, help=f"registry name (default {DEFAULT_NAME})")
    tr.add_argument("--registry", default=None, help=reg_help)
    tr.add_argument("--promote", action="store_true", help="promote the new version to production")
    tr.set_defaults(func=cmd_train)

    sw = rsub.add_parser("sweep", help="train one policy per reward/parameter combination (Ray tasks in parallel) "
                                       "and rank them on the same held-out bars",
                         description="Each combination of --grid trains a policy with the same seed and data as "
                                     "its own Ray task, evaluated on the same held-out window; the ranking is by "
                                     "held-out Sharpe, next to buy and hold. Grid keys: reward (pnl, "
                                     "differential_sharpe/dsr, drawdown), the rewards' parameters (scale, eta, clip, "
                                     "penalty) and training settings (learning_rate, seed, n_steps, batch_size, "
                                     "window_bars); a parameter applies to the rewards that take it.")
    sw.add_argument("--grid", required=True,
                    help='e.g. "reward=pnl,drawdown;scale=50,100" (values 1,2,3 or a..b:step; keys by ; or ,)')
    _add_training_args(sw, task_cpus=0.5, what="each training task")
    sw.add_argument("--reward", default="pnl", help="the reward when --grid has no reward key (default pnl)")
    sw.add_argument("--name", default=DEFAULT_NAME, help=f"registry name for --promote-best (default {DEFAULT_NAME})")
    sw.add_argument("--registry", default=None, help=reg_help)
    sw.add_argument("--promote-best", action="store_true",
                    help="register the best combination by held-out Sharpe and promote it (no other is registered)")
    sw.add_argument("--json", action="store_true", help="print the ranking as JSON")
    sw.set_defaults(func=cmd_sweep)

    ev = rsub.add_parser("evaluate", help="the held-out comparison table of a registered policy")
    ev.add_argument("--input", nargs="+", required=True, help="the files it was trained on (or others)")
    ev.add_argument("--market", default=None)
    ev.add_argument("--name", default=DEFAULT_NAME)
    ev.add_argument("--version", default=None, help="e.g. v2 (default: production, else the latest)")
    ev.add_argument("--eval-fraction", type=flags.fraction(), default=None, help="default: the one it was trained with")
    ev.add_argument("--registry", default=None, help=reg_help)
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(func=cmd_evaluate)


def _add_training_args(p, task_cpus: float, what: str) -> None:
    """The data, algorithm, environment and Ray flags that rl train and rl sweep share."""
    p.add_argument("--input", nargs="+", required=True, help="Parquet, CSV or Feather files of candles or trades")
    p.add_argument("--market", default=None, help="the market to trade (default: the first by name)")
    p.add_argument("--algo", choices=["ppo", "a2c", "dqn"], default="ppo", help="algorithm (default ppo)")
    p.add_argument("--timesteps", type=flags.positive_int, default=20_000, help="env steps in all (default 20000)")
    p.add_argument("--actions", choices=["3", "5"], default="3",
                   help="3: target flat/long/short (default); 5: hold, enter/exit long, enter/exit short")
    p.add_argument("--window-bars", type=flags.positive_int, default=512, help="bars per episode (default 512)")
    p.add_argument("--n-envs", type=flags.positive_int, default=2, help="vectorised env copies (default 2)")
    p.add_argument("--n-steps", type=flags.positive_int, default=256, help="rollout steps per env (default 256)")
    p.add_argument("--batch-size", type=flags.positive_int, default=64, help="minibatch size (default 64)")
    p.add_argument("--learning-rate", type=flags.positive_float, default=3e-4, help="default 3e-4")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--eval-fraction", type=flags.fraction(), default=0.2,
                   help="final fraction of the bars held out for evaluation (default 0.2)")
    p.add_argument("--fee", type=float, default=0.001, help="taker fee per fill (default 0.001)")
    p.add_argument("--slippage-bps", type=float, default=0.0, help="slippage per fill in bps (default 0)")
    p.add_argument("--size", default="equity:1", help="position size, as backtest --size (default equity:1)")
    p.add_argument("--leverage", type=flags.positive_float, default=1.0, help="gross notional cap (default 1)")
    p.add_argument("--cash", type=flags.positive_float, default=10_000.0, help="starting cash (default 10000)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster address (auto: the running one; default: $RAY_ADDRESS as `ray job submit` "
                        "sets it, else a local instance)")
    p.add_argument("--task-cpus", type=flags.positive_float, default=task_cpus,
                   help=f"CPUs {what} asks for (default {task_cpus:g})")
    p.add_argument("--serial", action="store_true", help="train in this process, not as Ray tasks")


def _params(text: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, eq, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise CommandLineError(f"--reward-params: {part!r}: write NAME=NUMBER, e.g. eta=0.01") from None
        if not eq:
            raise CommandLineError(f"--reward-params: {part!r}: write NAME=NUMBER")
    return out


def _check_common(args) -> None:
    """Input files, flag combinations and the size spec: checked before any work."""
    from engine.backtest.settings import Size

    for p in args.input:
        check_input_file(p)
    if args.ray_address is not None and args.serial:
        raise CommandLineError("--ray-address and --serial exclude each other")
    Size.parse(args.size)


def _spec(args, reward: str, reward_params: dict, **extra):
    from rl.train import TrainSpec

    spec = TrainSpec(inputs=[str(p) for p in args.input], market=args.market, algo=args.algo,
                     timesteps=args.timesteps, actions=args.actions, reward=reward, reward_params=reward_params,
                     window_bars=args.window_bars, n_envs=args.n_envs, n_steps=args.n_steps,
                     batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                     eval_fraction=args.eval_fraction, fee=args.fee, slippage_bps=args.slippage_bps, size=args.size,
                     leverage=args.leverage, cash=args.cash, **extra)
    spec.check()
    return spec


def _register(reg, name: str, spec, result, extra_params: dict | None = None):
    """A trained policy as a new rl_policy version of ``name``, with its held-out table in the metrics."""
    metrics = {"held_out": json_safe(result.evaluation), "timesteps": result.timesteps, "seconds": result.seconds}
    return reg.register(name=name, kind="rl_policy", files={"policy.zip": result.policy}, metrics=metrics,
                        features=result.observation["features"], window=result.window, data_hash=result.data_hash,
                        params={"algo": spec.algo, "actions": spec.actions, "observation": result.observation,
                                "reward": spec.reward, "reward_params": spec.reward_params, "env": spec.env_kwargs(),
                                "eval_fraction": spec.eval_fraction, "market": result.evaluation["market"],
                                "train": json_safe(result.spec), **(extra_params or {})})


def cmd_train(args) -> int:
    from rl.evaluate import format_table
    from rl.rewards import canonical, make_reward
    from rl.train import train, train_on_ray

    _check_common(args)
    params = _params(args.reward_params)
    make_reward(args.reward, params)  # a bad name or parameter fails before any work
    spec = _spec(args, canonical(args.reward), params,
                 checkpoint_dir=str(Path(args.checkpoint_dir).resolve()) if args.checkpoint_dir else None,
                 checkpoint_every=args.checkpoint_every, resume=args.resume)
    reg = flags.registry(args.registry)
    if args.serial:
        result = train(spec)
    else:
        result = _on_ray(args, spec, train_on_ray)
    info = _register(reg, args.name, spec, result)
    if args.promote:
        info = reg.promote(args.name, info.version)
    print(format_table(result.evaluation))
    print(f"{info.name} {info.version} ({info.stage}): {result.timesteps:,} steps"
          f"{f' (resumed at {result.resumed_from:,})' if result.resumed_from else ''} in {result.seconds:.1f}s "
          f"-> {info.path}")
    return 0


def _on_ray(args, spec, fn):
    from app.ray_session import ray_session
    with ray_session(args.ray_address):
        return fn(spec, args.task_cpus)


def cmd_sweep(args) -> int:
    import sys
    import time

    from rl import sweep as rs
    from rl.rewards import make_reward
    from schemas.errors import ConfigError

    _check_common(args)
    try:
        combos = rs.parse_sweep_grid(args.grid, args.reward)
    except ConfigError as e:
        raise CommandLineError(str(e) if str(e).startswith("--") else f"--grid: {e}") from None
    base = _spec(args, combos[0].reward, {})
    specs = [c.spec(base) for c in combos]
    for c, s in zip(combos, specs):  # every combination's reward and settings are checked before any training
        make_reward(c.reward, c.reward_params)
        s.check()
    reg = flags.registry(args.registry) if args.promote_best else None
    print(f"rl sweep: {len(combos)} combination{'s' if len(combos) != 1 else ''} of {args.grid!r}, {args.algo} "
          f"{args.timesteps:,} steps each, seed {args.seed}, "
          + ("in this process" if args.serial else f"as Ray tasks of {args.task_cpus:g} CPU"), file=sys.stderr)
    t0 = time.perf_counter()
    finished = []

    def done(i: int, result) -> None:
        finished.append(i)
        r = rs.row(combos[i], result)
        print(f"rl sweep {len(finished)}/{len(combos)} done: {combos[i].label()}: held-out return "
              f"{_pct(r['total_return'])}, sharpe {_fixed(r['sharpe'])}, max drawdown {_pct(r['max_drawdown'])}, "
              f"{_fixed(r['trades'], '.0f')} trades ({result.seconds:.1f}s)", file=sys.stderr, flush=True)

    if args.serial:
        results = rs.run_serial(specs, done)
    else:
        from app.ray_session import ray_session
        with ray_session(args.ray_address):
            results = rs.run_on_ray(specs, args.task_cpus, done)
    ranked = rs.rank([rs.row(c, r) for c, r in zip(combos, results)])
    first = results[0].evaluation
    report = {"grid": args.grid, "market": first["market"], "window": first["window"], "rows": ranked,
              "seconds": time.perf_counter() - t0, "promoted": None}
    if args.promote_best:
        best = ranked[0]
        i = best["combo"]
        info = _register(reg, args.name, specs[i], results[i],
                         {"sweep": {"grid": args.grid, "combination": combos[i].label(), "rank": 1,
                                    "of": len(combos), "sharpe": best["sharpe"]}})
        info = reg.promote(args.name, info.version)
        report["promoted"] = {"name": info.name, "version": info.version, "combo": i, "label": combos[i].label(),
                              "path": str(info.path)}
    if args.json:
        print(json.dumps(json_safe(report), indent=2))
    else:
        print(rs.format_ranking(ranked, report["window"], report["market"]))
        p = report["promoted"]
        print(f"{len(combos)} runs in {report['seconds']:.1f}s"
              + (f"; best by held-out Sharpe: {p['label']} -> {p['name']} {p['version']} (production) {p['path']}"
                 if p else ""))
    return 0


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.2%}"


def _fixed(v, fmt: str = ".2f") -> str:
    return "n/a" if v is None else format(v, fmt)


def cmd_evaluate(args) -> int:
    from rl.data import load_market
    from rl.evaluate import evaluate, format_table
    from rl.policy import load

    for p in args.input:
        check_input_file(p)
    reg = flags.registry(args.registry, write=False)
    info = reg.get(args.name, args.version) if args.version else (reg.production(args.name) or reg.latest(args.name))
    if info is None:
        raise CommandLineError(f"no version of {args.name!r} in {reg.root}; run crypto-intel rl train first")
    if info.kind != "rl_policy":
        raise CommandLineError(f"{info.name} {info.version} is a {info.kind} model, not an rl_policy")
    policy = load(info.path, info.params.get("algo"))
    market = args.market or info.params.get("market")
    data = load_market([str(p) for p in args.input], market)
    if list(data.names) != list(info.params.get("observation", {}).get("features", data.names)):
        raise CommandLineError(f"{info.name} {info.version} observes other features than these inputs give")
    env_kw = dict(info.params.get("env") or {})
    fraction = args.eval_fraction or float(info.params.get("eval_fraction", 0.2))

    def act(obs):
        return int(policy.act(obs[None, :])[0][0])

    report = evaluate(data, env_kw, fraction, act, label=f"{info.name} {info.version}")
    print(json.dumps(json_safe(report), indent=2) if args.json else format_table(report))
    return 0


