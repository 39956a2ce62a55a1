"""Distributed adaptation on tf.distribute: one process, several devices on one host
(``MirroredStrategy``), or several hosts configured by ``TF_CONFIG`` (``MultiWorkerMirroredStrategy``).

Keras 3's ``Model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so
multi-worker stages run :class:`StageLoop`, a custom step under ``strategy.run`` that reproduces
``fit``'s semantics (loss averaged over the *global* batch with class weights as sample weights,
unweighted metrics, the same callbacks and logs). Everything else (data, model, freeze stages,
optimizers, evaluation, run directory) is the one recipe in ``tlzoo.train.recipe``.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import keras
import numpy as np

from tlzoo.errors import ConfigError, TrainingError

STRATEGIES = ("auto", "one", "mirrored", "multiworker")
DEFAULT_CONNECT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Cluster:
    """The part of ``TF_CONFIG`` tlzoo needs: every worker's address and this process's place."""

    workers: tuple[str, ...]  # chief first when the spec has a "chief" job
    task_type: str
    task_index: int
    has_chief: bool = False

    @property
    def rank(self) -> int:
        return self.task_index + (1 if self.task_type == "worker" and self.has_chief else 0)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def address(self) -> str:
        return self.workers[self.rank]


def parse_tf_config(text: str | None = None) -> Cluster | None:
    """``TF_CONFIG`` (the environment variable by default) -> :class:`Cluster`, or None when unset.
    Malformed specs are refused here, naming the problem, before any server starts."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text or not text.strip():
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc}): {text[:200]!r}") from None
    if (not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict)
            or not isinstance(spec.get("task"), dict)):
        raise ConfigError(f'TF_CONFIG needs "cluster" and "task" objects, got {text[:200]!r}')
    cluster, task = spec["cluster"], spec["task"]
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ConfigError(f"TF_CONFIG cluster jobs {unknown} are not supported; use 'chief' and/or 'worker'")
    jobs: dict[str, list[str]] = {}
    for job in ("chief", "worker"):
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f"TF_CONFIG cluster.{job} must be a list of 'host:port' strings, got {addresses!r}")
        for a in addresses:
            host, _, port = a.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"TF_CONFIG address {a!r} in cluster.{job} is not 'host:port'")
        jobs[job] = addresses
    if len(jobs["chief"]) > 1:
        raise ConfigError(f"TF_CONFIG has {len(jobs['chief'])} chiefs; at most one")
    workers = tuple(jobs["chief"] + jobs["worker"])
    if not workers:
        raise ConfigError("TF_CONFIG cluster lists no workers")
    if len(set(workers)) != len(workers):
        raise ConfigError(f"TF_CONFIG lists an address twice: {list(workers)}")
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in jobs or not jobs[task_type]:
        raise ConfigError(f"TF_CONFIG task.type {task_type!r} is not a job of the cluster "
                          f"({[j for j in jobs if jobs[j]]})")
    if not isinstance(task_index, int) or not 0 <= task_index < len(jobs[task_type]):
        raise ConfigError(
            f"TF_CONFIG task.index {task_index!r} is out of range for the {len(jobs[task_type])} {task_type} "
            f"address(es)"
        )
    return Cluster(workers, task_type, task_index, has_chief=bool(jobs["chief"]))


@dataclass
class Distribution:
    """The strategy a run trains under, and this process's role in it."""

    kind: str  # "one" | "mirrored" | "multiworker"
    strategy: Any
    cluster: Cluster | None = None

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def uses_fit(self) -> bool:
        return self.kind != "multiworker"

    def scope(self) -> Any:
        return self.strategy.scope()

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.replicas:
            raise ConfigError(
                f"global batch size {batch_size} is not divisible by the {self.replicas} replicas of the "
                f"{self.kind} strategy; use a multiple of {self.replicas}"
            )

    def distribute_dataset(self, ds: Any) -> Any:
        """``ds`` split across replicas. Make it once per run: a new dataset object would restart
        the shuffle sequence that ``fit`` continues from stage to stage."""
        import tensorflow as tf

        options = tf.data.Options()
        # In-memory data: every worker reads it whole and keeps its share of each global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    def distribute_shards(self, make: Any, global_batch: int) -> Any:
        """A distributed dataset whose workers each read only their own shard of the samples:
        ``make(per_replica_batch, (num_shards, shard))`` builds one worker's pipeline (for file
        sources, so that no worker decodes another's files)."""

        def per_worker(ctx: Any) -> Any:
            return make(ctx.get_per_replica_batch_size(global_batch), (ctx.num_input_pipelines, ctx.input_pipeline_id))

        return self.strategy.distribute_datasets_from_function(per_worker)

    def barrier(self) -> None:
        """Wait for every worker (a dummy all-reduce), so none leaves while a peer still works:
        a worker that exits stops its heartbeats, which the others report as a crash."""
        if self.kind == "multiworker":
            import tensorflow as tf

            self.strategy.reduce("SUM", self.strategy.run(lambda: tf.constant(1.0)), axis=None)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "replicas": self.replicas}
        if self.cluster:
            out.update(workers=list(self.cluster.workers), rank=self.cluster.rank)
        return out


def _gpus() -> list[Any]:
    import tensorflow as tf

    return tf.config.list_logical_devices("GPU")


def select_strategy(name: str = "auto", *, connect_timeout_s: float | None = None) -> Distribution:
    """``auto``: multiworker when ``TF_CONFIG`` names more than one worker, else mirrored on
    several GPUs, else one. The others are taken as asked, with their preconditions checked.
    Workers wait ``connect_timeout_s`` (default ``$TLZOO_CONNECT_TIMEOUT_S`` or 300) for their peers."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    cluster = parse_tf_config()
    if name == "auto":
        name = "multiworker" if cluster and len(cluster.workers) > 1 else ("mirrored" if len(_gpus()) > 1 else "one")
    if name == "one":
        return Distribution("one", tf.distribute.get_strategy())
    if name == "mirrored":
        return Distribution("mirrored", tf.distribute.MirroredStrategy())
    if cluster is None:
        raise ConfigError("strategy 'multiworker' needs TF_CONFIG (the cluster spec); see the README's 'Several hosts'")
    if connect_timeout_s is None:
        connect_timeout_s = float(os.environ.get("TLZOO_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S))
    with _connect_watchdog(cluster, connect_timeout_s):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Distribution("multiworker", strategy, cluster)


# Runs in a separate process: the parent is stuck in a C++ call that holds the GIL and ignores
# SIGTERM, so neither a thread nor a signal handler in the parent could ever report anything.
_WATCHDOG = r"""
import os, select, signal, socket, sys
pid, timeout, me, peers = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
if select.select([sys.stdin], [], [], timeout)[0]:
    sys.exit(0)  # the parent connected (or died) and closed our stdin
def reachable(address):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False
missing = [a for a in peers if not reachable(a)] or peers
print(f"tlzoo: error: worker {me} could not reach {', '.join(missing)} within {timeout:g} s; check that every "
      f"worker is started with the same TF_CONFIG cluster and that the ports are open", file=sys.stderr, flush=True)
os.kill(pid, signal.SIGKILL)
"""


@contextlib.contextmanager
def _connect_watchdog(cluster: Cluster, timeout_s: float) -> Iterator[None]:
    """TensorFlow waits for every peer inside a call that neither times out nor yields to signals.
    If the cluster has not formed in ``timeout_s``, a watchdog process names the unreachable peers
    and ends this one."""
    peers = [a for i, a in enumerate(cluster.workers) if i != cluster.rank]
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout_s),
                                 f"{cluster.rank} ({cluster.address})", *peers], stdin=subprocess.PIPE)
    try:
        yield
    finally:
        assert watchdog.stdin is not None
        watchdog.stdin.close()
        watchdog.wait(10)


# ---------------------------------------------------------------------------------- the loop
class StageLoop:
    """One freeze-schedule stage trained with a custom step under ``strategy.run``.

    Mirrors ``Model.fit``: per-replica loss = plugin loss with class weights as sample weights,
    scaled from the local batch to the global one (so all-reduced gradients equal the
    single-process gradient of the same global batch); metrics unweighted and aggregated across
    workers by their sync-on-read variables; the caller's Keras callbacks see fit's logs.
    """

    def __init__(self, dist: Distribution, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 loss: keras.losses.Loss, metrics: list[Any], class_weight: dict[int, float] | None) -> None:
        import tensorflow as tf

        self.dist, self.model, self.optimizer, self.loss_fn = dist, model, optimizer, loss
        self.metrics = metrics
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.val_loss_tracker = keras.metrics.Mean(name="val_loss")
        self.val_metrics = [m.__class__.from_config(m.get_config()) for m in metrics]
        n = (max(class_weight) + 1) if class_weight else 0
        self.class_table = (tf.constant([class_weight.get(i, 1.0) for i in range(n)], tf.float32)
                            if class_weight else None)
        if not self.optimizer.built:
            self.optimizer.build(model.trainable_variables)
        self._train_step = tf.function(self._distributed_train_step)
        self._val_step = tf.function(self._distributed_val_step)

    # The replica functions ------------------------------------------------------------------
    def _weights(self, y: Any) -> Any:
        import tensorflow as tf

        if self.class_table is None:
            return None
        return tf.gather(self.class_table, tf.cast(tf.reshape(y, [-1]), tf.int32))

    def _replica_train(self, x: Any, y: Any) -> Any:
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        local_n = tf.cast(tf.shape(x)[0], tf.float32)
        global_n = ctx.all_reduce("SUM", local_n)
        with tf.GradientTape() as tape:
            p = self.model(x, training=True)
            # Keras losses average over the local batch and, under a strategy, divide by the replica
            # count; undo that and weight by this replica's share of the global batch, so the
            # all-reduced (summed) gradients are the gradient of the global-batch mean.
            replicas = ctx.num_replicas_in_sync
            loss = self.loss_fn(y, p, sample_weight=self._weights(y)) * replicas * local_n / global_n
            if self.model.losses:
                loss += tf.add_n(self.model.losses) / replicas
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        for m in self.metrics:
            m.update_state(y, p)
        self.loss_tracker.update_state(loss * global_n / local_n, sample_weight=local_n)
        return loss

    def _replica_val(self, x: Any, y: Any) -> None:
        import tensorflow as tf

        p = self.model(x, training=False)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        # Like fit's validation: class weights apply to training only.
        local_mean = self.loss_fn(y, p) * tf.distribute.get_replica_context().num_replicas_in_sync
        self.val_loss_tracker.update_state(local_mean, sample_weight=n)
        for m in self.val_metrics:
            m.update_state(y, p)

    def _distributed_train_step(self, batch: Any) -> Any:
        return self.dist.strategy.run(self._replica_train, args=batch)

    def _distributed_val_step(self, batch: Any) -> None:
        self.dist.strategy.run(self._replica_val, args=batch)

    # The epoch loop ---------------------------------------------------------------------------
    def _epoch(self, train_ds: Any, val_ds: Any, cbs: keras.callbacks.CallbackList) -> dict[str, float]:
        for m in [self.loss_tracker, *self.metrics]:
            m.reset_state()
        for step, batch in enumerate(train_ds):
            self._train_step(batch)
            cbs.on_train_batch_end(step, {"loss": float(self.loss_tracker.result())})
        logs = self._logs([self.loss_tracker, *self.metrics])
        for m in [self.val_loss_tracker, *self.val_metrics]:
            m.reset_state()
        for batch in val_ds:
            self._val_step(batch)
        return logs | self._logs([self.val_loss_tracker]) | self._logs(self.val_metrics, "val_")

    def _logs(self, trackers: list[Any], prefix: str = "") -> dict[str, float]:
        return {prefix + m.name: float(m.result()) for m in trackers}

    def fit(self, train_ds: Any, val_ds: Any, epochs: int, callbacks: list[keras.callbacks.Callback],
            initial_epoch: int = 0) -> None:
        """Train on datasets made by :meth:`Distribution.distribute_dataset`."""
        import tensorflow as tf

        cbs = keras.callbacks.CallbackList(callbacks, model=self.model)
        self.model.stop_training = False
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            try:
                logs = self._epoch(train_ds, val_ds, cbs)
            except (tf.errors.UnavailableError, tf.errors.CancelledError) as exc:
                first = (str(exc).strip().splitlines() or [""])[0]
                raise TrainingError(
                    f"a peer worker stopped during epoch {epoch + 1} ({type(exc).__name__}: {first}); start the "
                    f"same command on every worker again to resume from the last checkpoint"
                ) from exc
            if not np.isfinite(logs["loss"]):
                raise TrainingError(f"loss became {logs['loss']} at epoch {epoch + 1}; lower the learning rate")
            cbs.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        cbs.on_train_end()


def weights_digest(model: keras.Model) -> str:
    """sha256 over every weight's bytes: equal on all workers when they stayed in sync."""
    import hashlib

    h = hashlib.sha256()
    for v in model.weights:
        h.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    return h.hexdigest()


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` ports free on ``host`` now, for a local cluster (tests, benchmarks, trying it out)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
