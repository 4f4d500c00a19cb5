"""The tables of docs/export.md, rendered from benchmarks/results/export_sizes.json and
benchmarks/results/inference.json (``benchmarks/tables.py`` writes them into the doc)."""
from __future__ import annotations


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def sizes_table(data: dict) -> str:
    """File sizes (KiB) and ratios per model, one row each."""
    rows = ["| model | removed | accuracy dense → pruned | torch.save | dense safetensors "
            "| sparse | torch.save / sparse | dense / sparse | round trip | ONNX max abs diff |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for m in data["models"]:
        b = m["bytes"]
        rows.append(
            f"| {m['arch']} | {100 * m['removed']:.2f} % | {m['accuracy_dense']:.2f} → "
            f"{m['accuracy_pruned']:.2f} % | {_kib(b['torch_save'])} KiB | "
            f"{_kib(b['dense_safetensors'])} KiB | {_kib(b['sparse'])} KiB | "
            f"{m['ratio_torch_save']:.1f}x | {m['ratio_dense_safetensors']:.1f}x | "
            f"{'exact' if m['round_trip_exact'] else 'DIFFERS'} | {m['onnx_max_abs_diff']:.1e} |")
    return "\n".join(rows)


def positions_table(data: dict) -> str:
    """What the positions of the non-zeros cost under each coding, in bits per weight."""
    codings = list(data["models"][0]["position_bits_per_entry"])
    rows = ["| model | " + " | ".join(codings) + " |", "|---|" + "---:|" * len(codings)]
    for m in data["models"]:
        bits = m["position_bits_per_entry"]
        rows.append(f"| {m['arch']} | " + " | ".join(f"{bits[c]:.3f}" for c in codings) + " |")
    return "\n".join(rows)


def inference_table(data: dict) -> str:
    """Median latency at batch 1 and batch 256, and test accuracy, per model and variant."""
    rows = ["| model | variant | batch 1 (µs) | batch 256 (ms) | accuracy |",
            "|---|---|---:|---:|---:|"]
    for r in data["rows"]:
        rows.append(f"| {r['model']} | {r['variant']} | {r['batch_1_us']:,.0f} | "
                    f"{r['batch_256_ms']:,.2f} | {r['accuracy']:.2f} % |")
    return "\n".join(rows)
