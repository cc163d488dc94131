"""Speed, memory and RANet Table 3 figures of the attention peers (CCNet, DANet, ANN).

1. Forward and forward+backward time of each attention module alone (CCNet's RCCA with R = 2,
   DANet's PAM + CAM, ANN's AFNB + APNB) on a fixed 1 x C x S x S map, against the non-local
   block (embedded Gaussian, the baseline all three set out to make cheaper) and PSANet's PSA
   module, measured in the same run. Wall and CPU time are both printed; one CPU thread by
   default, since on a shared machine CPU time is the stable figure.
2. The RANet Table 3 investigation: parameters, GMACs / GFLOPs and peak memory (eval forward,
   train forward+backward) of every registered attention module at ``scope="module"`` on the
   1 x 512 x 97 x 97 map and at ``scope="head"`` on 1 x 512 x 97 x 97 and 1 x 2048 x 97 x 97,
   beside the paper's row (:func:`gsbench.analysis.attention.profile_attention_module`; CUDA:
   allocator peak; CPU: peak live tensor storage, parameters excluded, input included).

    python benchmarks/bench_peers.py                  # CPU (or CUDA when available)
    python benchmarks/bench_peers.py --size 65 --channels 512 --skip-table
"""

from __future__ import annotations

import argparse

import torch

from gsbench.analysis.attention import build_attention_module, profile_attention_module

from _common import start_benchmark, timed

TIMED = ("nonlocal", "ccnet", "danet", "annet", "psanet")


def run_timing(channels, size, device, repeats):
    """{name: ((forward wall, cpu), (forward+backward wall, cpu))} per attention module."""
    torch.manual_seed(0)
    x = torch.randn(1, channels, size, size, device=device, requires_grad=True)
    results = {}
    for name in TIMED:
        module = build_attention_module(name, channels).to(device)
        with torch.no_grad():
            module.eval()(x)  # fixes PSANet's lazy mask from this map
        # Training mode for the backward pass; BN keeps running statistics with one image.
        module.train()
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()

        def forward(module=module):
            with torch.no_grad():
                module(x)

        def forward_backward(module=module):
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()

        results[name] = (timed(forward, device, repeats), timed(forward_backward, device, repeats))
    return results


def table3_rows(names, device):
    """(scope, channels, name, figures) for each module at the three settings, one at a time."""
    for scope, channels in (("module", 512), ("head", 512), ("head", 2048)):
        for name in names:
            figures = profile_attention_module(name, (1, channels, 97, 97), scope, str(device))
            yield scope, channels, name, figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=49, help="timing input size S (1xCxSxS)")
    parser.add_argument("--channels", type=int, default=512, help="timing input channels C")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: stable CPU times on a shared machine)")
    parser.add_argument("--skip-table", action="store_true", help="timing only")
    parser.add_argument("--table-modules", default=",".join(TIMED),
                        help="registered modules for the Table 3 part (RANet's own benchmark "
                             "covers ranet, whose CPU forward at 97x97 takes long)")
    args = parser.parse_args()
    device = start_benchmark(args)

    s, c = args.size, args.channels
    print(f"\nattention modules alone on 1x{c}x{s}x{s}: median of {args.repeats}")
    results = run_timing(c, s, device, args.repeats)
    base_f, base_b = results["nonlocal"][0][1], results["nonlocal"][1][1]
    for name, ((fw, fc), (bw, bc)) in results.items():
        print(f"  {name:9s} forward {fw * 1e3:8.1f} ms wall {fc * 1e3:8.1f} ms CPU   "
              f"forward+backward {bw * 1e3:8.1f} ms wall {bc * 1e3:8.1f} ms CPU   "
              f"CPU vs non-local: forward x{fc / base_f:.2f}, forward+backward x{bc / base_b:.2f}")

    if args.skip_table:
        return
    print("\nRANet Table 3 investigation (paper: 'increase ... estimated by using the "
          "[1 x 512 x 97 x 97] feature map')")
    print(f"  {'scope':6s} {'C':>4s} {'module':9s} {'params':>8s} {'GMACs':>8s} {'GFLOPs':>8s} "
          f"{'fwd MiB':>9s} {'f+b MiB':>9s}   paper: G / M / MB")
    for scope, channels, name, f in table3_rows(args.table_modules.split(","), device):
        paper = f["paper"]
        paper_text = (f"{paper['gflops']} / {paper['params_m']} / {paper['memory_mb']}"
                      if paper else "-")
        print(f"  {scope:6s} {channels:4d} {name:9s} {f['params_m']:7.2f}M {f['gmacs']:8.1f} "
              f"{f['gflops']:8.1f} {f['peak_memory_forward_mib']:9.1f} "
              f"{f['peak_memory_train_mib']:9.1f}   {paper_text}", flush=True)
    print(f"  memory: {f['memory_method']}")


if __name__ == "__main__":
    main()
