"""Every option of bench, alphabeta, roofline and numa is checked when parsed: exit 2 with a message that says why.

Serial: parsing sends no message, and every rank parses the same command line.
"""

from __future__ import annotations

import pytest

from collectives import bench, cli
from collectives.alphabeta import command as alphabeta_command
from numa import __main__ as numa_main
from training import roofline


def _refused(parse, argv, capsys) -> str:
    """``parse(argv)`` exits 2 (an agreed exit); returns what it printed on stderr."""
    with pytest.raises(cli.AgreedExit) as e:
        parse(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv,says", [
    (["--repeats", "-5"], "--repeats: expected an integer >= 1, got '-5'"),
    (["--repeats", "0"], "--repeats: expected an integer >= 1"),
    (["--warmup", "-1"], "--warmup: expected an integer >= 0"),
    (["--passes", "0"], "--passes: expected an integer >= 1"),
    (["--budget", "-1"], "--budget: expected a finite number of seconds > 0"),
    (["--budget", "nan"], "--budget: expected a finite number of seconds > 0"),
    (["--min-bytes", "0"], "--min-bytes: must be at least 1 byte"),
    (["--min-bytes", "-4"], "--min-bytes: must be at least 1 byte"),
    (["--max-bytes", "lots"], "--max-bytes: expected a size in bytes"),
    (["--max-bytes", "2"], "--max-bytes (2 bytes) is below --min-bytes (4 bytes)"),
    (["--algorithms", "ring,nope"], "unknown allreduce algorithm(s) nope"),
    (["--dtype", "complex64"], "--dtype: invalid choice"),
])
def test_bench_refuses_bad_options(argv, says, capsys):
    assert says in _refused(bench.parse_args, argv, capsys)


def test_bench_refuses_device_memory_without_a_gpu(capsys):
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("this machine has cupy and a GPU")
    except ImportError:
        pass
    except Exception:  # cupy without a usable device: refused too
        pass
    assert "--memory cuda needs cupy and a usable GPU" in _refused(bench.parse_args, ["--memory", "cuda"], capsys)


@pytest.mark.parametrize("argv,says", [
    (["--max-segments", "0"], "--max-segments: expected an integer >= 1"),
    (["--max-pairs", "0"], "--max-pairs: expected an integer >= 1"),
    (["--budget", "-1"], "--budget: expected a finite number of seconds > 0"),
    (["--bench-budget", "inf"], "--bench-budget: expected a finite number of seconds > 0"),
    (["--passes", "-3"], "--passes: expected an integer >= 1"),
    (["--ranks-per-node", "0"], "--ranks-per-node: expected comma-separated integers >= 1"),
    (["--sim-ranks", "a"], "--sim-ranks: expected comma-separated integers >= 1, got 'a'"),
    (["--sim-ranks", "2,-4"], "--sim-ranks: expected comma-separated integers >= 1"),
    (["--max-bytes", "0"], "--max-bytes: must be at least 1 byte"),
    (["--predict", "--min-bytes", "0"], "--min-bytes: must be at least 1 byte"),
    (["--predict", "--min-bytes", "64K", "--predict-max-bytes", "1K"],
     "--predict-max-bytes (1024 bytes) is below --min-bytes (65536 bytes)"),
    (["--simulate", "--sim-max-bytes", "2"], "--sim-max-bytes (2 bytes) is below the simulation's first size"),
    (["--profile", "p.json", "--output", "raw.h5"], "--output writes the raw timings of a measurement"),
    (["--collective", "alltoall"], "--collective: invalid choice"),
])
def test_alphabeta_refuses_bad_options(argv, says, capsys):
    assert says in _refused(alphabeta_command.parse_args, argv, capsys)


@pytest.mark.parametrize("argv,says", [
    (["--threads", "0"], "--threads: expected an integer >= 1"),
    (["--scaling", "0,1"], "--scaling: expected comma-separated integers >= 1"),
    (["--scaling", "1,two"], "--scaling: expected comma-separated integers >= 1"),
    (["--threads", "1", "--scaling", "1,2"], "not allowed with argument"),
    (["--kernels", "triad,nope"], "--kernels: unknown kernel(s) in 'triad,nope'"),
    (["--sizes", "64K,0"], "--sizes: must be at least 1 byte"),
    (["--sizes", ","], "--sizes: expected comma-separated sizes in bytes"),
    (["--triad-bytes", "4"], "--triad-bytes (4 bytes) holds no float64 element"),
    (["--gemm-n", "-2"], "--gemm-n: expected an integer >= 1"),
    (["--budget", "0"], "--budget: expected a finite number of seconds > 0"),
])
def test_roofline_refuses_bad_options(argv, says, capsys):
    assert says in _refused(roofline.parse_args, argv, capsys)


@pytest.mark.parametrize("argv,says", [
    (["--threads", "-1"], "--threads: expected an integer >= 1, got '-1'"),
    (["--flags", "compact", "--threads", "-2"], "--threads: expected an integer >= 1"),
    (["--expect-ranks", "0"], "--expect-ranks: expected an integer >= 1"),
    (["--bind", "scatter"], "--bind: invalid choice"),
])
def test_numa_refuses_bad_options(argv, says, capsys):
    assert says in _refused(numa_main.parser().parse_args, argv, capsys)


def test_good_options_parse_to_their_values():
    args = bench.parse_args(["--min-bytes", "1K", "--max-bytes", "1K", "--repeats", "3", "--budget", "0.5"])
    assert (args.min_bytes, args.max_bytes, args.repeats, args.budget) == (1024, 1024, 3, 0.5)
    assert bench.parse_args([]).repeats is None  # scaled with size
    args = alphabeta_command.parse_args(["--sim-ranks", "2,7", "--ranks-per-node", "1,16", "--max-segments", "1"])
    assert (args.sim_ranks, args.ranks_per_node, args.max_segments) == ([2, 7], [1, 16], 1)
    args = roofline.parse_args(["--sizes", "64K,1M", "--kernels", "triad", "--scaling", "1,2"])
    assert (args.sizes, args.kernels, args.scaling, args.threads) == ([64 << 10, 1 << 20], ["triad"], [1, 2], None)


@pytest.mark.timeout(5)  # before the fix this never returned, its list growing without end
@pytest.mark.parametrize("lo", [0, -8])
def test_sizes_refuse_a_start_that_never_doubles(lo):
    """Doubling 0 (or a negative) never reaches the end: the sweep looped forever, growing memory."""
    with pytest.raises(ValueError, match="at least 1 byte"):
        bench.sizes(lo, 64)


def test_one_size_parser_for_every_tool():
    assert cli.parse_size("64M") == 64 << 20 and cli.parse_size("1KB") == 1024 and cli.parse_size("4") == 4
    assert cli.size_list("4,1K") == [4, 1024]
    assert not hasattr(bench, "parse_size") and not hasattr(bench, "positive_int")
