"""Start-up: help, listings and argument / missing-file errors answer without importing TensorFlow or
Keras; TensorFlow's start-up lines stay off stderr; SIGINT / SIGTERM end a command with one line and
an exit status, and the run-directory writer cleans up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras")
# What TensorFlow 2.21 prints on a CPU machine before its logging is set up (and right after).
NOISE = ("All log messages before absl::InitializeLog", "oneDNN custom operations are on",
         "Could not find cuda drivers", "cuInit", "This TensorFlow binary is optimized")

# The console script's code, plus a report of which heavy modules the command imported.
PROBE = textwrap.dedent("""
    import json, os, sys
    from tlzoo.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    with open(os.environ["TLZOO_PROBE"], "w") as f:
        json.dump(sorted(m for m in {heavy!r} if m in sys.modules), f)
    sys.exit(code)
""").format(heavy=HEAVY)


@pytest.fixture(autouse=True)
def _fresh_keras():
    """These tests never import Keras in this process: nothing to clear (overrides the conftest's)."""
    yield


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the CLI's own default
    return {**env, "PYTHONPATH": path, **extra}


def tlzoo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``tlzoo ARGS`` in a fresh interpreter; also return the heavy modules it imported."""
    probe = tmp_path / "imported.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=_env(TLZOO_PROBE=str(probe)),
                          capture_output=True, text=True, timeout=120)
    return proc, json.loads(probe.read_text())


@pytest.mark.parametrize("args, expect", [
    (["--help"], "usage: tlzoo"),
    (["adapt", "--help"], "--label-fraction"),
    (["export", "--help"], "--opset"),
    (["verify", "--help"], "--hashes-only"),
    (["keys", "generate", "--help"], "--out"),
    (["plugins"], "medical-imaging"),
    (["backbones"], "backbones"),
])
def test_help_and_listings_import_no_tensorflow(tmp_path, args, expect):
    proc, imported = tlzoo(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert imported == [], f"tlzoo {' '.join(args)} imported {imported}"
    assert expect in proc.stdout and proc.stderr == ""


def test_listings_are_complete_without_keras(tmp_path):
    proc, imported = tlzoo(tmp_path, "backbones", "--json")
    assert proc.returncode == 0 and imported == []
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    v2 = rows["mobilenet_v2"]
    assert (v2["feature_dim"], v2["num_params"], v2["min_size"]) == (1280, 2257984, 32)
    assert v2["weights"]["imagenet"]["licence"] == "Apache-2.0"
    assert v2["preprocess"] == "keras.applications.mobilenet_v2.preprocess_input"
    assert {"resnet50", "efficientnet_b0", "small_cnn", "ts_fcn", "hub_mobilenet_v2_100"} <= set(rows)

    proc, imported = tlzoo(tmp_path, "plugins", "--json")
    assert proc.returncode == 0 and imported == []
    listed = json.loads(proc.stdout)
    names = {p["name"] for p in listed["plugins"]}
    assert {"medical-imaging", "defect-detection", "timeseries-fraud"} <= names and listed["failed"] == {}


@pytest.mark.parametrize("args, message", [
    (["adapt", "--plugin", "medical-imaging", "--data", "missing.npz"], "data file 'missing.npz' does not exist"),
    (["adapt", "--plugin", "medical-imaging", "--data", "missing_folder"],
     "data source 'missing_folder' does not exist"),
    (["adapt", "--config", "missing.yaml"], "'missing.yaml' does not exist"),
    (["adapt", "--plugin", "medical-imagin", "--data", "."], "unknown plugin 'medical-imagin'; did you mean"),
    (["adapt", "--plugin", "medical-imaging", "--data", ".", "--backbone", "mobilenet_v3"],
     "unknown backbone 'mobilenet_v3'"),
    (["adapt", "--plugin", "medical-imaging"], "adapt needs --plugin and --data"),
    (["predict", "runs/nope", "--data", "x"], "'runs/nope' is neither a run directory nor an export directory"),
    (["export", "runs/nope"], "run directory 'runs/nope' does not exist"),
    (["evaluate", "runs/nope"], "'runs/nope' is not a tlzoo run directory"),
    (["explain", "runs/nope"], "'runs/nope' is not a tlzoo run directory"),
    (["verify", "exports/nope"], "export directory 'exports/nope' does not exist"),
    (["tune", "--plugin", "medical-imaging", "--data", "missing.npz", "--out", "t"], "data file 'missing.npz'"),
])
def test_errors_answer_without_tensorflow(tmp_path, args, message):
    proc, imported = tlzoo(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert imported == [], f"tlzoo {' '.join(args)} imported {imported}"
    assert proc.stderr.startswith(f"tlzoo: error: {message}") and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr


@pytest.mark.parametrize("args, message", [
    (["predict", "runs/nope", "x"], "the following arguments are required: --data"),
    (["adapt", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["export", "runs/nope", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_usage_errors_answer_without_tensorflow(tmp_path, args, message):
    proc, imported = tlzoo(tmp_path, *args)
    assert proc.returncode == 2 and imported == []
    assert proc.stderr.startswith("usage: tlzoo") and message in proc.stderr.splitlines()[-1]


def test_verbose_goes_before_or_after_the_command(tmp_path):
    from tlzoo.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["plugins"]).verbose is False
    assert parser.parse_args(["--verbose", "plugins"]).verbose is True
    assert parser.parse_args(["plugins", "--verbose"]).verbose is True
    proc, imported = tlzoo(tmp_path, "backbones", "--verbose", "mobilenet_v2")
    assert proc.returncode == 0 and imported == [] and "1 backbones" in proc.stdout


# ---------------------------------------------------------------- TensorFlow's start-up noise

FAKE_TENSORFLOW = '''
import os, sys, warnings
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1796116828.383118    4374 port.cc:153] oneDNN custom operations are on. You may see ...\\n")
os.write(2, b"I0000 00:00:1796116828.383379    4374 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
            b"GPU will not be used.\\n")
os.write(2, b"E0000 00:00:1796116828.417856    4374 some_op.cc:12] a real error from C++\\n")
print("a line from Python", file=sys.stderr)
warnings.warn("a real warning")
if os.environ.get("FAKE_TF_FAILS"):
    raise ImportError("libfoo.so: cannot open shared object file")
'''


@pytest.fixture
def fake_tensorflow(tmp_path):
    """A ``tensorflow`` package that prints TensorFlow's start-up lines and real ones to descriptor 2."""
    (tmp_path / "fake" / "tensorflow").mkdir(parents=True)
    (tmp_path / "fake" / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    return tmp_path / "fake"


def _import_tensorflow(fake: Path, setup: str, **env: str) -> subprocess.CompletedProcess:
    code = f"from tlzoo.cli.quiet import *\n{setup}\nimport tensorflow\nprint('imported')"
    environment = _env(**env)
    environment["PYTHONPATH"] = os.pathsep.join([str(fake), environment["PYTHONPATH"]])
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)


def test_startup_noise_is_filtered_and_real_lines_kept(fake_tensorflow):
    quiet = _import_tensorflow(fake_tensorflow, "quiet_tensorflow_startup()")
    assert quiet.returncode == 0 and quiet.stdout == "imported\n"
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    for kept in ("a real error from C++", "a line from Python", "UserWarning: a real warning"):
        assert kept in quiet.stderr

    loud = _import_tensorflow(fake_tensorflow, "verbose_tensorflow_startup()")
    assert all(n in loud.stderr for n in NOISE[:3]) and "a real error from C++" in loud.stderr


def test_a_failing_import_still_shows_its_traceback(fake_tensorflow):
    failed = _import_tensorflow(fake_tensorflow, "quiet_tensorflow_startup()", FAKE_TF_FAILS="1")
    assert failed.returncode == 1 and not [n for n in NOISE if n in failed.stderr]
    assert "Traceback" in failed.stderr and "ImportError: libfoo.so: cannot open shared object file" in failed.stderr
    assert failed.stderr.index("a line from Python") < failed.stderr.index("Traceback")


def test_real_tensorflow_starts_quietly(tmp_path):
    """The same function, then the real TensorFlow: import, a first op (device set-up) and Keras."""
    code = ("from tlzoo.cli.quiet import quiet_tensorflow_startup\nquiet_tensorflow_startup()\n"
            "import tensorflow as tf, keras\n"
            "print(int(tf.constant(1) + 1), keras.layers.Dense(2)(tf.ones((1, 3))).shape)")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2 (1, 2)"
    assert not [n for n in NOISE if n in proc.stderr], proc.stderr


# ---------------------------------------------------------------- signals


def _interrupting_command(monkeypatch, tmp_path, signum):
    """`tlzoo backbones` replaced by a command that opens a run directory and gets ``signum`` in it."""
    from tlzoo.cli import backbones
    from tlzoo.runs import atomic_dir

    def run(args):
        with atomic_dir(tmp_path / "runs" / "r"):
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises in here
        raise AssertionError("the signal did not interrupt the command")

    monkeypatch.setattr(backbones, "run", run)


@pytest.mark.parametrize("signum, code, line", [(signal.SIGINT, 130, "tlzoo: interrupted"),
                                                (signal.SIGTERM, 143, "tlzoo: terminated")])
def test_signal_ends_a_command_with_one_line_and_cleans_up(monkeypatch, tmp_path, capsys, signum, code, line):
    from tlzoo.cli.main import main

    _interrupting_command(monkeypatch, tmp_path, signum)
    # as in a terminal: a test runner started in the background of a script inherits SIGINT ignored
    # (a signal ignored by the parent stays ignored; test_an_ignored_signal_stays_ignored checks that)
    default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    inherited = signal.signal(signum, default)
    try:
        exit_code = main(["backbones"])
        after = signal.getsignal(signum)
    finally:
        signal.signal(signum, inherited)
    assert exit_code == code
    assert capsys.readouterr().err == line + "\n"
    assert list((tmp_path / "runs").iterdir()) == []  # the temporary run directory is gone
    assert after is default  # handlers restored for whoever called main()


def test_an_ignored_signal_stays_ignored():
    """nohup and background jobs ignore signals; tlzoo does not take them back."""
    from tlzoo.cli.signals import interruptible

    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_a_second_signal_stops_at_once():
    """The first signal unwinds; if the clean-up is stuck, a second one ends the process as the
    signal would without tlzoo's handler."""
    code = textwrap.dedent("""
        import os, signal, time
        from tlzoo.cli.signals import interruptible
        with interruptible():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                print("unwinding", flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                print("not reached", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGTERM and proc.stdout == "unwinding\n", proc.stderr


def test_sigterm_during_adapt_leaves_no_temporary_run_directory(tmp_path):
    """A real `tlzoo adapt` on a tiny data set, terminated while it trains."""
    from tlzoo.data.synthetic import write_opacity_npz

    data = write_opacity_npz(tmp_path / "scans.npz", n_train=96, n_val=48, n_test=64, size=32, contrast=60)
    runs = tmp_path / "runs"
    args = ["adapt", "--plugin", "medical-imaging", "--data", str(data), "--backbone", "mobilenet_025",
            "--weights", "none", "--input-size", "32", "--schedule", "top:2", "--head-epochs", "40", "--epochs", "40",
            "--out", str(runs / "r")]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from tlzoo.cli import main; sys.exit(main())",
                                 *args], cwd=tmp_path, env=_env(), stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 240
            while not list(runs.glob(".r.tmp-*")):  # the run directory is being written: training has begun
                assert proc.poll() is None, (tmp_path / "err.txt").read_text()
                assert time.monotonic() < deadline, "adapt never started writing its run directory"
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = (tmp_path / "err.txt").read_text()
    assert code == 143, stderr
    assert stderr == "tlzoo: terminated\n"  # no traceback, and none of TensorFlow's start-up lines
    assert list(runs.glob(".*.tmp-*")) == [] and not (runs / "r").exists()
