"""tf.distribute for HRL-Rec's custom training loop: `--strategy=default|mirrored|multi_worker|
parameter_server` (Keras 3 `fit` fails under the last two, so training never uses it).

  default           one device.
  mirrored          synchronous data parallelism over this machine's GPUs, or over its CPU split
                    into --cpu_replicas logical devices (ReductionToOneDevice all-reduce on CPU).
  multi_worker      synchronous data parallelism over the workers in TF_CONFIG (collective
                    all-reduce); every worker runs the same command, worker 0 is the chief.
  parameter_server  asynchronous: the chief in TF_CONFIG schedules steps on the workers, whose
                    gradients update variables held by the ps tasks; the worker and ps tasks
                    run the same command and only serve (`serve`).

Synchronous replicas compute exactly the single-device step with the global batch B split in
R equal parts: every loss of HRL-Rec is a mean over the real transitions of the batch, so each
replica scales its losses by n_local / n_global (`transition_share`); the replicas' gradients
are summed, clipped by their global norm, and only then applied; the Gaussian action noise of
replica k is rows [k b, (k + 1) b) of the noise a single device would draw for the global batch
(`replica_normal`). Asynchronous parameter-server steps are each one worker's batch.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")
_CLUSTER_STRATEGIES = {"multi_worker": ("worker",), "parameter_server": ("chief", "worker", "ps")}


def split_cpu(replicas: int) -> None:
    """Splits the first physical CPU into `replicas` logical devices (before any op runs)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu) or []
    if replicas > 1 and len(current) != replicas:   # (listing devices would initialise them)
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
        except RuntimeError as e:
            raise RuntimeError(f"--cpu_replicas={replicas}: the CPU must be split before "
                               f"TensorFlow runs its first op ({e})") from None


def tf_config(strategy: str) -> dict:
    """TF_CONFIG, checked for what `strategy` needs; errors name the missing part."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(f"--strategy={strategy}: expected the TF_CONFIG environment variable "
                         f"(cluster and task, see README 'Training on a cluster')")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--strategy={strategy}: TF_CONFIG={raw!r} is not "
                         f'{{"cluster": {{...}}, "task": {{"type": ..., "index": ...}}}} ({e})'
                         ) from None
    needed = _CLUSTER_STRATEGIES[strategy]
    missing = [job for job in needed if job not in cluster and job != "chief"]
    if strategy == "parameter_server" and "chief" not in cluster:
        missing.insert(0, "chief")
    if missing:
        raise ValueError(f"--strategy={strategy}: TF_CONFIG's cluster has no {missing} job "
                         f"(it has {sorted(cluster)})")
    if kind not in cluster or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"--strategy={strategy}: TF_CONFIG task {kind}:{index} is not in the "
                         f"cluster {cluster}")
    return config


def task_of(strategy: str) -> tuple[str, int]:
    """(task type, index) of this process; ('chief', 0) without a cluster."""
    if strategy not in _CLUSTER_STRATEGIES:
        return "chief", 0
    task = tf_config(strategy)["task"]
    return task["type"], int(task["index"])


def is_chief(strategy: str) -> bool:
    kind, index = task_of(strategy)
    return kind == "chief" or (strategy == "multi_worker" and kind == "worker" and index == 0)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by --strategy (create it before any other op)."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name}: expected one of {STRATEGIES}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL is GPU-only; on CPU the replicas reduce on one device.
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    tf_config(name)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return tf.distribute.experimental.ParameterServerStrategy(resolver)


def serve(strategy: str, inter_op_threads: int = 0) -> None:
    """Runs this worker or ps task of a parameter-server cluster until it is killed.

    The worker runs the chief's scheduled steps on its inter-op threads; one is held by each
    in-flight function and the servers' own work needs another, so fewer than
    (workers + 1) threads can deadlock `join()` on a small machine."""
    config = tf_config(strategy)
    kind, index = config["task"]["type"], int(config["task"]["index"])
    proto = tf.compat.v1.ConfigProto()
    proto.inter_op_parallelism_threads = inter_op_threads or len(config["cluster"]["worker"]) + 1
    server = tf.distribute.Server(tf.train.ClusterSpec(config["cluster"]), job_name=kind,
                                  task_index=index, config=proto, protocol="grpc", start=True)
    print(f"serving as {kind}:{index} of {strategy} cluster", flush=True)
    server.join()


def agree(strategy: tf.distribute.Strategy, value: float) -> float:
    """The mean of `value` over the workers of a multi-worker strategy, so that decisions taken
    from it (early stopping) are the same everywhere and no worker waits alone in a collective."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value
    @tf.function
    def mean(x):
        local = strategy.run(tf.identity, args=(x,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None)

    return float(mean(tf.constant(value, tf.float64)))


def worker_count(strategy_name: str) -> int:
    if strategy_name not in _CLUSTER_STRATEGIES:
        return 1
    return len(tf_config(strategy_name)["cluster"]["worker"])


# -- inside a replica ------------------------------------------------------------------------
def _replica():
    ctx = tf.distribute.get_replica_context()
    return ctx, (1 if ctx is None else ctx.num_replicas_in_sync)


def num_replicas() -> int:
    return _replica()[1]


def all_reduce_sum(values):
    """Sums `values` (a tensor or a list of tensors) over the replicas in sync."""
    ctx, replicas = _replica()
    if replicas == 1:
        return values
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def transition_share(weight) -> tf.Tensor:
    """n_local / max(n_global, 1): the factor that turns this replica's mean over its real
    transitions into its part of the mean over the global batch (1 on one replica)."""
    local = tf.reduce_sum(tf.cast(weight, tf.float32))
    return local / tf.maximum(all_reduce_sum(local), 1.0)


def replica_normal(shape, seed) -> tf.Tensor:
    """stateless_normal(shape, seed) for a replica's rows of the global batch: the rows the
    same call would give the whole batch on one device (replicas hold equal batches)."""
    ctx, replicas = _replica()
    if replicas == 1:
        return tf.random.stateless_normal(shape, seed)
    rows = shape[0]
    full = tf.random.stateless_normal(tf.concat([[rows * replicas], shape[1:]], 0), seed)
    start = tf.cast(ctx.replica_id_in_sync_group, rows.dtype) * rows
    return full[start:start + rows]
