"""GPU catalog: identification from GFD labels, and file overrides."""

from __future__ import annotations

import pathlib

import pytest

from gpufleet.hardware import catalog, overrides

P, M = catalog.PRODUCT_LABEL, catalog.MEMORY_LABEL


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({P: "NVIDIA-H100-80GB-HBM3", M: "81559"}, "H100-80GB"),
        ({P: "NVIDIA-H100-PCIe", M: "81559"}, "H100-80GB"),
        ({P: "NVIDIA-A100-SXM4-80GB", M: "81920"}, "A100-80GB"),
        ({P: "NVIDIA-A100-80GB-PCIe", M: "81920"}, "A100-80GB"),
        ({P: "NVIDIA-A100-SXM4-40GB", M: "40960"}, "A100-40GB"),
        ({P: "NVIDIA-A100-PCIE-40GB", M: "40536"}, "A100-40GB"),  # within the 2 % tolerance
        ({P: "NVIDIA-H200", M: "143771"}, "H200"),
        ({P: "NVIDIA-B200", M: "183359"}, "B200"),
        ({P: "NVIDIA-L40S", M: "46068"}, "L40S"),
        ({P: "NVIDIA-L4", M: "23034"}, "L4"),
        ({P: "NVIDIA-A10G", M: "23028"}, "A10G"),
        # An H100 is never an A100, even with the A100's memory or a matching prefix.
        ({P: "NVIDIA-H100-80GB-HBM3", M: "81920"}, "H100-80GB"),
        ({P: "NVIDIA-A100-SXM4-80GB", M: "81559"}, "A100-80GB"),
        # Product right, memory wrong: not identified.
        ({P: "NVIDIA-A100-SXM4-40GB", M: "81920"}, None),
        ({P: "NVIDIA-H100-80GB-HBM3", M: "95830"}, None),
        # H100 NVL (94 GB) is not in the catalog.
        ({P: "NVIDIA-H100-NVL", M: "95830"}, None),
        # MIG slices and time-sliced GPUs are not whole GPUs.
        ({P: "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb", M: "9728"}, None),
        ({P: "NVIDIA-H100-80GB-HBM3-SHARED", M: "81559"}, None),
        ({P: "NVIDIA-H100", M: "81559"}, None),
        ({P: "NVIDIA-H100-80GB-HBM3"}, None),
        ({M: "81559"}, None),
        ({P: "NVIDIA-H100-80GB-HBM3", M: "80GB"}, None),
        ({}, None),
    ],
)
def test_identify(labels: dict[str, str], expected: str | None) -> None:
    found = catalog.identify(labels)
    assert (found.name if found else None) == expected


def test_no_product_string_belongs_to_two_generations() -> None:
    products = [p for gpu in catalog.GPUS.values() for p in gpu.products]
    assert len(products) == len(set(products))


@pytest.mark.parametrize("gpu", list(catalog.GPUS.values()), ids=lambda g: g.name)
def test_every_generation_identifies_from_its_own_labels(gpu: catalog.GpuSpec) -> None:
    for product in gpu.products:
        assert catalog.identify({P: product, M: str(gpu.memory_mib)}) == gpu
    assert gpu.family in {"ampere", "ada-lovelace", "hopper", "blackwell"}
    measured = gpu.bandwidth_gbps * gpu.decode_efficiency
    assert gpu.throughput_weight == round(measured / (2039.0 * 0.80), 2)
    assert 0 < gpu.decode_efficiency <= 1 and 0 < gpu.prefill_efficiency <= 1
    assert gpu.perf_source


def test_b200_prior_comes_from_measurements_not_the_data_sheet() -> None:
    # 8 TB/s at the A100's 80 % would make a B200 3.9x an A100-80GB; measured (vLLM,
    # Llama-3.1-8B) it is 1.77x an H100, so its prior is about 2x the H100's, not 2.4x.
    b200, h100 = catalog.GPUS["B200"], catalog.GPUS["H100-80GB"]
    assert 1.6 < b200.throughput_weight / h100.throughput_weight < 2.1


def test_unknown_gpu_lists_known_names() -> None:
    with pytest.raises(catalog.UnknownGpu) as info:
        catalog.get("X100")
    assert "'X100'" in str(info.value) and "H200" in str(info.value)


def test_overrides_change_a_known_generation_and_add_a_new_one(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "gpus:\n"
        "  - name: H100-80GB\n    throughputWeight: 1.8\n    maxGpusPerNode: 4\n"
        "  - name: RTX-6000-ADA\n    memoryMib: 49140\n    bandwidthGbps: 960\n"
        "    bf16Tflops: 364\n    products: [NVIDIA-RTX-6000-Ada-Generation]\n"
    )
    gpus = overrides.load_catalog(path)
    assert gpus["H100-80GB"].throughput_weight == 1.8
    assert gpus["H100-80GB"].max_gpus_per_node == 4
    assert gpus["H100-80GB"].memory_mib == 81559
    assert gpus["RTX-6000-ADA"].throughput_weight == round(960 / 2039, 2)
    assert gpus["RTX-6000-ADA"].perf_source == catalog.UNCALIBRATED
    labels = {P: "NVIDIA-RTX-6000-Ada-Generation", M: "49140"}
    assert catalog.identify(labels, gpus) == gpus["RTX-6000-ADA"]
    assert catalog.identify(labels) is None
    assert catalog.GPUS["H100-80GB"].throughput_weight == 1.64


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("gpus: [{name: H200, memoryMib: -5}]", "memoryMib"),
        ("gpus: [{name: H200, colour: green}]", "colour"),
        ("gpus: [{name: H200, interconnect: infiniband}]", "interconnect"),
        ("gpus: [{name: NEW, memoryMib: 1000}]", "bandwidthGbps, bf16Tflops, products"),
        ("gpus: {name: H200}", "gpus"),
        ("gpus: [", "invalid GPU catalog overrides"),
    ],
)
def test_bad_overrides_name_the_field(text: str, fragment: str) -> None:
    with pytest.raises(overrides.CatalogError) as info:
        overrides.apply_overrides(overrides.parse_overrides(text))
    assert fragment in str(info.value)


def test_missing_override_file_is_a_catalog_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(overrides.CatalogError):
        overrides.load_catalog(tmp_path / "absent.yaml")
