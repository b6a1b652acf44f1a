"""The greedy token of each row (the argmax of its fp32 logits) with the output layer read in bf16, then
only the few tokens that can still win scored in fp32.

Why: the output layer of a small chat model is a large share of a CPU decode step (Qwen2.5-0.5B: 151,936
rows of 896, more than a quarter of the step's multiply-adds), and only its argmax is used. A bf16 matrix
product reads half the bytes and runs on the CPU's bf16 units, but its logits are off by rounding, which
can move the argmax. So the bf16 logits only screen: each is within a proven bound of the fp32 logit,
every token whose upper bound reaches the bf16 leader's lower bound is scored again in fp32, and the
argmax is taken among those. The token is the one the full fp32 product picks (up to the float rounding of a
different summation order, as any other batch shape); nothing is approximated.

The bound: bf16 keeps 8 significant bits, so rounding the hidden state and the weights each moves a
product h_i*w_i by at most 2**-8 of its size, the fp32 accumulation adds d*2**-24, and a bf16 result
rounds once more by 2**-8. In all |bf16 logit - fp32 logit| <= c * sum_i |h_i*w_i| <= c * |h| * |w| with
c = 3 * 2**-8 + 2 * d * 2**-24; `SLACK` is about 2.7 times that. `ScreenedArgmax.check` measures the
bound on real logits before the screen is trusted, so a kernel that accumulated in bf16 would be caught,
not believed.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from tunesafe.models.packed_linear import pack, packed_product, tensor_version

SLACK = 2.0 ** -5

# Architectures whose logits are exactly `lm_head(final hidden state)`: no logit scale or soft-capping.
PLAIN_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def output_screen(model: Any) -> ScreenedArgmax | None:
    """The screen of this model's output layer (the one built before while its weights are unchanged),
    or None where the logits are not a plain bias-free fp32 product on the CPU."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) not in PLAIN_HEAD_MODELS:
        return None
    head = base.get_output_embeddings()
    if (type(head) is not torch.nn.Linear or head.bias is not None or head.weight.dtype != torch.float32
            or head.weight.device.type != "cpu"):
        return None
    weight = head.weight
    screen = _SCREENS.get(id(weight))
    if screen is None or screen.weight is not weight or screen.key != ScreenedArgmax.key_of(weight):
        screen = _SCREENS[id(weight)] = ScreenedArgmax(weight)
        weakref.finalize(weight, _SCREENS.pop, id(weight), None)
    return screen


# One screen per live output layer, for every probe of the process: building and checking one costs
# about 0.3 s on the 0.5B model. A screen holds its layer weakly, so it goes with the model.
_SCREENS: dict[int, ScreenedArgmax] = {}


class ScreenedArgmax:
    """Greedy argmax over `weight` ([vocab, hidden], fp32, no bias) through a bf16 copy. The weight is
    held weakly (the model owns it); the bf16 copy, and its oneDNN pack where oneDNN works
    (`packed_linear.pack`), are the screen's own."""

    def __init__(self, weight: Any) -> None:
        import torch

        self._weight = weakref.ref(weight)
        self.low = weight.detach().to(torch.bfloat16)
        self._packed: tuple[Any, Any] | None = None  # (the bf16 copy packed, its pack)
        self.row_norms = weight.detach().norm(dim=1)
        self.slack = SLACK + 2 * weight.shape[1] * 2.0 ** -24
        self.key = self.key_of(weight)
        self.trusted: bool | None = None  # decided by `check` on the first rows it screens
        self.rows = self.rescored = 0  # rows screened, and fp32 logits computed for them (benchmarks)
        self.fallbacks = 0  # calls that read the full fp32 layer after screening

    @property
    def weight(self) -> Any:
        """The fp32 layer (None once its model is gone)."""
        return self._weight()

    @staticmethod
    def key_of(weight: Any) -> tuple[int, int]:
        """Changes when the weights do (a new tensor, or an in-place update by the optimiser)."""
        return weight.data_ptr(), tensor_version(weight)

    def approx(self, hidden: Any) -> tuple[Any, Any]:
        """bf16 logits [rows, vocab] (as fp32), and per row the factor that bounds how far each is from
        its fp32 logit: |bf16 - fp32| <= factor * |w_token|."""
        import torch

        if self._packed is None or self._packed[0] is not self.low:
            self._packed = (self.low, pack(self.low))
        low, packed = hidden.to(torch.bfloat16), self._packed[1]
        # oneDNN on the packed copy: a quarter less time at a probe's 16 rows, the same logits
        approx = torch.nn.functional.linear(low, self.low) if packed is None else packed_product(low, packed)
        return approx.float(), self.slack * hidden.norm(dim=1)

    def check(self, hidden: Any) -> bool:
        """Whether every bf16 logit of these rows is within its bound of the fp32 logit, on a CPU whose
        bf16 product is the faster (one without bf16 units runs it slower than fp32)."""
        approx, factor = self.approx(hidden)
        exact = hidden @ self.weight.T
        within = (approx - exact).abs() <= factor[:, None] * self.row_norms
        return bool(within.all()) and bf16_faster(self.weight)

    def __call__(self, hidden: Any) -> Any:
        """The argmax token of each row of `hidden` ([rows, hidden] fp32), lowest id on ties as argmax."""
        import torch

        if self.trusted is None:
            self.trusted = self.check(hidden)
        if not self.trusted:
            return (hidden @ self.weight.T).argmax(dim=-1)
        approx, factor = self.approx(hidden)
        # The bf16 leader's fp32 logit is at least `floor`, so a token can only win if its own upper bound
        # reaches it. Each token's own row norm, not the largest, keeps the candidates few: 26x fewer on
        # SmolLM2-135M, whose large hidden norms let thousands per row through the coarser bound.
        leader = approx.argmax(dim=1)
        floor = approx.gather(1, leader[:, None])[:, 0] - factor * self.row_norms[leader]
        reach = torch.addcmul(approx, factor[:, None], self.row_norms[None, :])
        rows, tokens = (reach >= floor[:, None]).nonzero(as_tuple=True)
        # A row of NaN or inf has no bound (and no candidate); past a quarter of the layer's rows, reading
        # the candidates again costs more than the full fp32 product.
        if rows.unique().numel() < hidden.shape[0] or rows.numel() > self.weight.shape[0] // 4:
            self.fallbacks += 1
            return (hidden @ self.weight.T).argmax(dim=-1)
        scores = (hidden[rows] * self.weight[tokens]).sum(dim=-1)
        n = hidden.shape[0]
        self.rows, self.rescored = self.rows + n, self.rescored + int(rows.numel())
        best = torch.full((n,), -torch.inf, dtype=scores.dtype).scatter_reduce(0, rows, scores, "amax")
        winners = torch.where(scores == best[rows], tokens, torch.iinfo(torch.long).max)
        return torch.full((n,), torch.iinfo(torch.long).max).scatter_reduce(0, rows, winners, "amin")


_FASTER: dict[tuple[int, ...], bool] = {}


def bf16_faster(weight: Any, rows: int = 16) -> bool:
    """Whether a bf16 product of `rows` hidden states with `weight` ran faster than the fp32 one here
    (each timed on its second run; measured once per weight shape and process)."""
    import torch

    shape = tuple(weight.shape)
    if shape not in _FASTER:
        hidden = torch.randn(rows, shape[1])
        low, low_hidden = weight.detach().to(torch.bfloat16), hidden.to(torch.bfloat16)
        times = []
        for product in (lambda: low_hidden @ low.T, lambda: hidden @ weight.detach().T):
            product()
            started = time.perf_counter()
            product()
            times.append(time.perf_counter() - started)
        _FASTER[shape] = times[0] < times[1]
    return _FASTER[shape]
