"""``crypto-intel rl``: train a stable-baselines3 policy on the trading environment as a Ray task (checkpoints,
resume, held-out evaluation, registry export) and print the held-out comparison table of a registered policy."""

from __future__ import annotations

import json
from pathlib import Path

from app import flags
from app.inputs import CommandLineError, check_input_file
from schemas.json_safe import json_safe

DEFAULT_NAME = "policy"


def add_rl_parser(sub) -> None:
    rl = sub.add_parser(
        "rl", help="train an RL trading policy (as a Ray task) and evaluate it on held-out bars",
        description="rl train fits a stable-baselines3 policy on the crypto_intel/Trading-v0 environment over the "
                    "engine's features (the backtest broker books every action), evaluates it on the final "
                    "--eval-fraction of the bars against buy and hold, random actions and the rule strategies, and "
                    "registers it as kind rl_policy; rl evaluate prints that comparison for a registered version.")
    rsub = rl.add_subparsers(dest="rl_command", required=True, metavar="ACTION")
    reg_help = "registry directory (default $CRYPTO_INTEL_MODELS_DIR or data/models)"

    tr = rsub.add_parser("train", help="train, evaluate on held-out bars and register a policy")
    tr.add_argument("--input", nargs="+", required=True, help="Parquet, CSV or Feather files of candles or trades")
    tr.add_argument("--market", default=None, help="the market to trade (default: the first by name)")
    tr.add_argument("--algo", choices=["ppo", "a2c", "dqn"], default="ppo", help="algorithm (default ppo)")
    tr.add_argument("--timesteps", type=flags.positive_int, default=20_000, help="env steps in all (default 20000)")
    tr.add_argument("--actions", choices=["3", "5"], default="3",
                    help="3: target flat/long/short (default); 5: hold, enter/exit long, enter/exit short")
    tr.add_argument("--reward", default="pnl", help="pnl (default), differential_sharpe (dsr) or drawdown")
    tr.add_argument("--reward-params", default="", metavar="K=V,...", help="reward parameters, e.g. eta=0.01")
    tr.add_argument("--window-bars", type=flags.positive_int, default=512, help="bars per episode (default 512)")
    tr.add_argument("--n-envs", type=flags.positive_int, default=2, help="vectorised env copies (default 2)")
    tr.add_argument("--n-steps", type=flags.positive_int, default=256, help="rollout steps per env (default 256)")
    tr.add_argument("--batch-size", type=flags.positive_int, default=64, help="minibatch size (default 64)")
    tr.add_argument("--learning-rate", type=flags.positive_float, default=3e-4, help="default 3e-4")
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument("--eval-fraction", type=flags.fraction(), default=0.2,
                    help="final fraction of the bars held out for evaluation (default 0.2)")
    tr.add_argument("--fee", type=float, default=0.001, help="taker fee per fill (default 0.001)")
    tr.add_argument("--slippage-bps", type=float, default=0.0, help="slippage per fill in bps (default 0)")
    tr.add_argument("--size", default="equity:1", help="position size, as backtest --size (default equity:1)")
    tr.add_argument("--leverage", type=flags.positive_float, default=1.0, help="gross notional cap (default 1)")
    tr.add_argument("--cash", type=flags.positive_float, default=10_000.0, help="starting cash (default 10000)")
    tr.add_argument("--checkpoint-dir", default=None, help="save checkpoints here (rl_model_<steps>_steps.zip)")
    tr.add_argument("--checkpoint-every", type=flags.positive_int, default=5_000,
                    help="steps between checkpoints (default 5000)")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir "
                                                          "up to --timesteps in all")
    tr.add_argument("--name", default=DEFAULT_NAME, help=f"registry name (default {DEFAULT_NAME})")
    tr.add_argument("--registry", default=None, help=reg_help)
    tr.add_argument("--promote", action="store_true", help="promote the new version to production")
    tr.add_argument("--ray-address", default=None,
                    help="Ray cluster address (auto: the running one; default: $RAY_ADDRESS as `ray job submit` "
                         "sets it, else a local instance)")
    tr.add_argument("--task-cpus", type=flags.positive_float, default=1.0, help="CPUs the training task asks for")
    tr.add_argument("--serial", action="store_true", help="train in this process, not as a Ray task")
    tr.set_defaults(func=cmd_train)

    ev = rsub.add_parser("evaluate", help="the held-out comparison table of a registered policy")
    ev.add_argument("--input", nargs="+", required=True, help="the files it was trained on (or others)")
    ev.add_argument("--market", default=None)
    ev.add_argument("--name", default=DEFAULT_NAME)
    ev.add_argument("--version", default=None, help="e.g. v2 (default: production, else the latest)")
    ev.add_argument("--eval-fraction", type=flags.fraction(), default=None, help="default: the one it was trained with")
    ev.add_argument("--registry", default=None, help=reg_help)
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(func=cmd_evaluate)


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


def cmd_train(args) -> int:
    from rl.evaluate import format_table
    from rl.rewards import canonical, make_reward
    from rl.train import TrainSpec, train, train_on_ray

    for p in args.input:
        check_input_file(p)
    if args.ray_address is not None and args.serial:
        raise CommandLineError("--ray-address and --serial exclude each other")
    from engine.backtest.settings import Size
    Size.parse(args.size)
    params = _params(args.reward_params)
    make_reward(args.reward, params)  # a bad name or parameter fails before any work
    spec = TrainSpec(inputs=[str(p) for p in args.input], market=args.market, algo=args.algo,
                     timesteps=args.timesteps, actions=args.actions, reward=canonical(args.reward),
                     reward_params=params, window_bars=args.window_bars, n_envs=args.n_envs, n_steps=args.n_steps,
                     batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                     eval_fraction=args.eval_fraction, fee=args.fee, slippage_bps=args.slippage_bps, size=args.size,
                     leverage=args.leverage, cash=args.cash,
                     checkpoint_dir=str(Path(args.checkpoint_dir).resolve()) if args.checkpoint_dir else None,
                     checkpoint_every=args.checkpoint_every, resume=args.resume)
    spec.check()
    reg = flags.registry(args.registry)
    if args.serial:
        result = train(spec)
    else:
        result = _on_ray(args, spec, train_on_ray)
    metrics = {"held_out": json_safe(result.evaluation), "timesteps": result.timesteps, "seconds": result.seconds}
    info = reg.register(name=args.name, kind="rl_policy", files={"policy.zip": result.policy}, metrics=metrics,
                        features=result.observation["features"], window=result.window, data_hash=result.data_hash,
                        params={"algo": spec.algo, "actions": spec.actions, "observation": result.observation,
                                "reward": spec.reward, "reward_params": spec.reward_params, "env": spec.env_kwargs(),
                                "eval_fraction": spec.eval_fraction, "market": result.evaluation["market"],
                                "train": json_safe(result.spec)})
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


def cmd_evaluate(args) -> int:
    from rl.data import load_market
    from rl.evaluate import evaluate, format_table
    from rl.policy import load

    for p in args.input:
        check_input_file(p)
    reg = flags.registry(args.registry)
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


