"""Step-overhead reducers: fused-optimiser choice, and the train step's eager path off CUDA."""

from __future__ import annotations

import pytest
import torch

import engine.learn.step_runner as SR
from engine.learn.step_runner import TrainStep, make_sgd, optimizer_mode


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def loss_fn(model: torch.nn.Module, x: torch.Tensor, depth: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return ((model(x) - depth) ** 2)[masks].mean()


def batches(n: int = 5):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g),
             torch.rand(2, 1, 8, 8, generator=g) < 0.7) for _ in range(n)]


def test_fused_is_chosen_only_where_torch_has_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    params = list(tiny().parameters())
    monkeypatch.setattr(SR, "fused_devices", lambda: {"cuda"})
    assert optimizer_mode(params) == "foreach"
    opt, mode = make_sgd(params, lr=0.1, momentum=0.9)
    assert mode == "foreach" and opt.defaults["foreach"] and not opt.defaults["fused"]
    monkeypatch.setattr(SR, "fused_devices", lambda: {"cpu", "cuda"})
    assert optimizer_mode(params) == "fused"
    assert optimizer_mode([torch.zeros(3, dtype=torch.int64)]) == "foreach"  # fused kernels are float-only


def test_a_refused_fused_optimiser_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SR, "fused_devices", lambda: {"cpu"})
    real = torch.optim.SGD

    def no_fused(*args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", no_fused)
    groups = [{"params": list(tiny().parameters()), "lr": 0.01}]
    opt, mode = make_sgd(groups, lr=0.1)
    assert mode == "foreach" and opt.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("graph", [True, False])
def test_cpu_steps_run_eagerly_and_match_a_plain_loop(graph: bool) -> None:
    plain, stepped = tiny(), tiny()
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9)
    opt, _ = make_sgd(stepped.parameters(), lr=0.05, momentum=0.9)
    step = TrainStep(stepped, opt, loss_fn, graph=graph, warmup=2)
    for x, d, m in batches():
        opt_plain.zero_grad()
        want = loss_fn(plain, x, d, m)
        want.backward()
        opt_plain.step()
        got = step(x, d, m)
        torch.testing.assert_close(got, want.detach())
    assert step.mode == "eager" and not step.graphed and step.steps == 5
    for a, b in zip(plain.parameters(), stepped.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_cuda_graph_steps_match_eager_steps() -> None:
    def run(graph: bool) -> tuple[list[torch.Tensor], list[torch.Tensor], str]:
        model = tiny().cuda()
        opt, _ = make_sgd(model.parameters(), lr=0.05, momentum=0.9)
        step = TrainStep(model, opt, loss_fn, graph=graph, warmup=2)
        data = [tuple(t.cuda() for t in b) for b in batches(6)]
        data.insert(4, tuple(t[:1] for t in data[4]))  # a partial batch after capture: runs eagerly
        losses = [step(*b) for b in data]
        return losses, [p.detach() for p in model.parameters()], step.mode

    eager, graphed = run(False), run(True)
    assert graphed[2] == "cuda-graph" and eager[2] == "eager"
    for a, b in zip(eager[0] + eager[1], graphed[0] + graphed[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class FakeCuda:
    """Stand-ins for torch.cuda's streams and graphs, so the capture logic runs on the CPU.

    Capturing runs the step's code without its effects (the weights and the
    optimiser's state are put back, as a real capture launches nothing);
    replaying runs the captured step again on the static buffers and writes
    its loss into the captured loss tensor, as a real replay would.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        import contextlib
        import copy

        self.captures = self.replays = self.side_streams = 0
        self.step: TrainStep | None = None
        fake = self

        class Stream:
            def wait_stream(self, other: object) -> None:
                pass

        class Graph:
            def replay(self) -> None:
                fake.replays += 1
                step = fake.step
                loss = step._eager(step._static)  # type: ignore[union-attr, arg-type]
                step._loss.copy_(loss)  # type: ignore[union-attr]

        @contextlib.contextmanager
        def graph(g: Graph):
            fake.captures += 1
            weights = [p.detach().clone() for p in model.parameters()]
            state = copy.deepcopy(opt.state_dict())
            yield
            with torch.no_grad():
                for p, w in zip(model.parameters(), weights):
                    p.copy_(w)
            opt.load_state_dict(state)

        @contextlib.contextmanager
        def stream(s: Stream):
            fake.side_streams += 1
            yield

        for name, value in dict(Stream=Stream, CUDAGraph=Graph, graph=graph, stream=stream,
                                current_stream=lambda *a: Stream(), synchronize=lambda *a: None).items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_capture_contract_on_fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the graphed step promises, checked on the CPU with stand-in streams and
    graphs: ``warmup`` eager steps on a side stream, then one capture and a replay per
    step, the batch copied into the static buffers, a batch of another shape run
    eagerly, returned losses that later replays do not overwrite, and the eager
    loop's losses and weights."""
    plain, graphed = tiny(), tiny()
    opt_plain, _ = make_sgd(plain.parameters(), lr=0.05, momentum=0.9)
    opt, _ = make_sgd(graphed.parameters(), lr=0.05, momentum=0.9)
    eager_step = TrainStep(plain, opt_plain, loss_fn, graph=False)
    fake = FakeCuda(monkeypatch, graphed, opt)
    step = TrainStep(graphed, opt, loss_fn, graph=True, warmup=2)
    step.graphed = True  # as on a CUDA device
    fake.step = step
    data = batches(6)
    data.insert(4, tuple(t[:1] for t in data[4]))  # a partial batch after the capture
    want = [eager_step(*b) for b in data]
    got = [step(*b) for b in data]
    assert (fake.side_streams, fake.captures, fake.replays) == (2, 1, 4)  # steps 1-2 warm up; 3, 4, 6, 7 replay
    assert step.mode == "cuda-graph"
    assert torch.equal(step._static[0], data[-1][0])  # type: ignore[index]
    for a, b in zip(want, got):
        assert torch.equal(a, b)
    for a, b in zip(plain.parameters(), graphed.parameters()):
        assert torch.equal(a, b)
