"""``gpufleet worker``: the claim, the GPU checks and the exec, with a fake NVML."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from gpufleet import podgpus
from gpufleet.worker import checks, claim, command
from gpufleet.worker.inventory import Gpu, InventoryError

# NVML's names and totals as the drivers report them (nvidia-smi --query-gpu=name,memory.total).
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559, uuid="GPU-aaa", nvlink_links=18)
A100 = Gpu(0, "NVIDIA A100-SXM4-80GB", 81920, uuid="GPU-bbb", nvlink_links=12)
H100_PCIE = Gpu(0, "NVIDIA H100 PCIe", 81559, uuid="GPU-ccc")
H200_NVL_SHORT = Gpu(0, "NVIDIA H200 NVL", 81559, uuid="GPU-ddd")
H100_ENV = {"GPUFLEET_GPU_GENERATION": "H100-80GB"}


def _gpus(template: Gpu, count: int) -> list[Gpu]:
    return [dataclasses.replace(template, index=i, uuid=f"GPU-{i}") for i in range(count)]


@dataclasses.dataclass
class FakeNvml:
    found: Sequence[Gpu] = ()
    error: str = ""

    def gpus(self) -> Sequence[Gpu]:
        if self.error:
            raise InventoryError(self.error)
        return self.found


@dataclasses.dataclass
class Exec:
    calls: list[tuple[str, list[str], dict[str, str]]] = dataclasses.field(default_factory=list)

    def __call__(self, file: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.calls.append((file, list(argv), dict(env)))


def test_product_label_is_nvml_name_with_dashes() -> None:
    assert H100.product == "NVIDIA-H100-80GB-HBM3"
    assert A100.product == "NVIDIA-A100-SXM4-80GB"


@pytest.mark.parametrize(
    ("args", "sizes"),
    [
        ([], (1, 1)),
        (["--tensor-parallel-size", "4"], (4, 1)),
        (["--tensor-parallel-size=2", "-pp", "2"], (2, 2)),
        (["-tp", "8"], (8, 1)),
        (["--tensor_parallel_size", "2", "--tensor-parallel-size", "4"], (4, 1)),
        (["--model", "m", "--pipeline_parallel_size=3"], (1, 3)),
    ],
)
def test_parallel_sizes_read_every_spelling_vllm_accepts(
    args: list[str], sizes: tuple[int, int]
) -> None:
    assert claim.parallel_sizes(args) == sizes


@pytest.mark.parametrize("args", [["-tp"], ["-tp", "two"], ["--tensor-parallel-size=0"]])
def test_a_bad_parallel_size_names_the_argument(args: list[str]) -> None:
    with pytest.raises(claim.ClaimError, match="expected a positive integer"):
        claim.parallel_sizes(args)


def test_the_claim_comes_from_the_catalog_or_is_spelled_out() -> None:
    by_name = claim.from_env(H100_ENV, ["-tp", "2"])
    assert (by_name.products, by_name.memory_mib, by_name.gpu_count) == (
        ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
        81559,
        2,
    )
    explicit = claim.from_env(
        {"GPUFLEET_GPU_PRODUCTS": "ACME-X1, ACME-X1-PCIe", "GPUFLEET_GPU_MEMORY_MIB": "49152"},
        [],
    )
    assert (explicit.generation, explicit.products) == ("ACME-X1", ("ACME-X1", "ACME-X1-PCIe"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "names no GPU generation: set GPUFLEET_GPU_GENERATION"),
        ({"GPUFLEET_GPU_GENERATION": "H300"}, "unknown GPU generation 'H300'"),
        ({"GPUFLEET_GPU_PRODUCTS": "X"}, "GPUFLEET_GPU_PRODUCTS and GPUFLEET_GPU_MEMORY_MIB"),
    ],
)
def test_an_unreadable_claim_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(claim.ClaimError, match=message):
        claim.from_env(env, [])


def test_right_generation_and_count_passes() -> None:
    findings = checks.check(claim.from_env(H100_ENV, ["-tp", "2"]), _gpus(H100, 2))
    assert findings == checks.Findings()


def test_other_generation_is_refused_naming_both() -> None:
    findings = checks.check(claim.from_env(H100_ENV, []), [A100])
    assert findings.mismatches == (
        "GPU 0 'NVIDIA A100-SXM4-80GB' (81920 MiB) is not the H100-80GB "
        "(NVIDIA-H100-80GB-HBM3 or NVIDIA-H100-PCIe, 81559 MiB) this pod was scheduled for",
    )


def test_memory_counts_as_much_as_the_product() -> None:
    asked = claim.from_env({"GPUFLEET_GPU_GENERATION": "H200"}, [])
    # An H200 NVL partitioned (or misreported) to 80 GB has the right product, not the memory.
    assert not checks.check(asked, [H200_NVL_SHORT]).ok
    assert checks.check(asked, [dataclasses.replace(H200_NVL_SHORT, memory_mib=143771)]).ok


def test_count_must_equal_tp_times_pp() -> None:
    findings = checks.check(claim.from_env(H100_ENV, ["-tp", "4"]), _gpus(H100, 2))
    assert len(findings.mismatches) == 1
    assert "2 GPU(s) visible" in findings.mismatches[0]
    assert "tensor-parallel-size 4 = 4" in findings.mismatches[0]
    pp = checks.check(claim.from_env(H100_ENV, ["-tp", "2", "-pp", "2"]), _gpus(H100, 4))
    assert pp.ok


def test_tp_over_pcie_is_warned_not_refused() -> None:
    findings = checks.check(claim.from_env(H100_ENV, ["-tp", "2"]), _gpus(H100_PCIE, 2))
    assert findings.ok
    assert findings.warnings == (
        "tensor-parallel-size 2 over PCIe: GPU(s) 0, 1 have no active NVLink, so every "
        "all-reduce crosses the host (expect slower decoding)",
    )
    assert checks.check(claim.from_env(H100_ENV, []), [H100_PCIE]).warnings == ()


@pytest.mark.parametrize(
    ("setting", "indices"),
    [(None, [0, 1, 2]), ("", []), ("2,0", [0, 2]), ("GPU-1", [1]), (" 1 , GPU-2", [1, 2])],
)
def test_cuda_visible_devices_selects_by_index_or_uuid(
    setting: str | None, indices: list[int]
) -> None:
    assert [g.index for g in checks.visible(_gpus(H100, 3), setting)] == indices


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, {}),
        (
            2,
            {
                "NCCL_ASYNC_ERROR_HANDLING": "1",
                "NCCL_MIN_NCHANNELS": "4",
                "NCCL_BUFFSIZE": "8388608",
            },
        ),
        (
            4,
            {
                "NCCL_ASYNC_ERROR_HANDLING": "1",
                "NCCL_MIN_NCHANNELS": "4",
                "NCCL_BUFFSIZE": "8388608",
                "NCCL_P2P_DISABLE": "0",
            },
        ),
    ],
)
def test_nccl_environment_by_gpu_count(count: int, expected: dict[str, str]) -> None:
    assert checks.nccl_env(count, {}) == expected


def test_nccl_variables_the_pod_sets_are_kept() -> None:
    assert "NCCL_BUFFSIZE" not in checks.nccl_env(4, {"NCCL_BUFFSIZE": "4194304"})


@pytest.mark.parametrize(
    ("remainder", "argv"),
    [
        (["--", "--model", "m"], ["vllm", "serve", "--model", "m"]),
        ([], ["vllm", "serve"]),
        (["--", "vllm", "serve", "m", "-tp", "2"], ["vllm", "serve", "m", "-tp", "2"]),
        (["python3", "-m", "vllm.entrypoints.openai.api_server"], None),
    ],
)
def test_server_argv_puts_vllm_serve_before_bare_flags(
    remainder: list[str], argv: list[str] | None
) -> None:
    assert command.server_argv(remainder) == (argv or remainder)


def test_a_match_execs_vllm_with_the_nccl_environment() -> None:
    exec_ = Exec()
    env = {**H100_ENV, "PATH": "/usr/bin"}
    rc = command.main(
        ["--", "--model", "m", "-tp", "4"], inventory=FakeNvml(_gpus(H100, 4)), environ=env,
        exec_=exec_,
    )  # fmt: skip
    assert rc == 0
    [(file, argv, executed_env)] = exec_.calls
    assert (file, argv) == ("vllm", ["vllm", "serve", "--model", "m", "-tp", "4"])
    assert executed_env["NCCL_P2P_DISABLE"] == "0"
    assert executed_env["PATH"] == "/usr/bin"


def test_a_mismatch_exits_3_naming_found_and_asked(capsys: pytest.CaptureFixture[str]) -> None:
    exec_ = Exec()
    rc = command.main(
        ["--", "vllm", "serve", "m", "-tp", "2"], inventory=FakeNvml(_gpus(A100, 2)),
        environ=H100_ENV, exec_=exec_,
    )  # fmt: skip
    assert (rc, exec_.calls) == (command.EXIT_MISMATCH, [])
    err = capsys.readouterr().err
    assert err.startswith("gpufleet worker: refusing to start vLLM: GPU 0 'NVIDIA A100-SXM4-80GB'")
    assert "is not the H100-80GB" in err and "GPU 1" in err


def test_no_driver_and_no_claim_have_their_own_exit_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nvml_down = FakeNvml(error="NVML could not start")
    assert command.main([], inventory=nvml_down, environ=H100_ENV, exec_=Exec()) == 4
    assert command.main([], inventory=FakeNvml([H100]), environ={}, exec_=Exec()) == 2
    assert "GPUFLEET_GPU_GENERATION" in capsys.readouterr().err


def test_check_only_prints_the_environment_and_does_not_exec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exec_ = Exec()
    rc = command.main(
        ["--", "-tp", "2"], check_only=True, inventory=FakeNvml(_gpus(H100, 2)),
        environ=H100_ENV, exec_=exec_,
    )  # fmt: skip
    assert (rc, exec_.calls) == (0, [])
    assert "NCCL_MIN_NCHANNELS=4" in capsys.readouterr().out.splitlines()


# The GPU health agent sees every GPU of the node; the worker tells it which are this pod's.
def test_the_checked_gpus_are_listed_for_the_health_agent(tmp_path: Path) -> None:
    listed = tmp_path / "gpu-uuids"
    node = [dataclasses.replace(H100, index=i, uuid=f"GPU-{i}") for i in range(4)]
    env = {**H100_ENV, "GPUFLEET_GPU_UUIDS_FILE": str(listed), "CUDA_VISIBLE_DEVICES": "1,GPU-3"}
    exec_ = Exec()
    rc = command.main(["--", "-tp", "2"], inventory=FakeNvml(node), environ=env, exec_=exec_)
    assert (rc, len(exec_.calls)) == (0, 1)
    assert podgpus.read(listed) == {"GPU-1", "GPU-3"}  # the GPUs vLLM will use, by UUID
    assert listed.read_text().startswith("# GPUs of this pod, written by gpufleet worker\n")


def test_nothing_is_listed_on_a_mismatch_or_without_the_variable(tmp_path: Path) -> None:
    listed = tmp_path / "gpu-uuids"
    env = {**H100_ENV, "GPUFLEET_GPU_UUIDS_FILE": str(listed)}
    rc = command.main(["--", "-tp", "2"], inventory=FakeNvml(_gpus(A100, 2)), environ=env,
                      exec_=Exec())  # fmt: skip
    assert (rc, listed.exists()) == (command.EXIT_MISMATCH, False)
    assert command.list_gpus(_gpus(H100, 1), H100_ENV) is None


def test_an_unwritable_list_is_logged_and_vllm_still_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**H100_ENV, "GPUFLEET_GPU_UUIDS_FILE": str(tmp_path / "absent-dir" / "gpu-uuids")}
    exec_ = Exec()
    rc = command.main(["--", "-tp", "1"], inventory=FakeNvml(_gpus(H100, 1)), environ=env,
                      exec_=exec_)  # fmt: skip
    assert (rc, len(exec_.calls)) == (0, 1)
    assert "cannot list this pod's GPUs for its health agent" in caplog.text
