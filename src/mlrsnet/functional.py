"""The maths of MLR-SNet as small pure functions with explicit state.

Nothing here holds state between calls: every function takes what it needs and
returns what it computes, in the style of optax. The torch classes in
:mod:`mlrsnet.net`, :mod:`mlrsnet.scheduler` and :mod:`mlrsnet.meta` are thin
wrappers around these functions.

Notation follows the paper (Shu et al., "MLR-SNet: Transferable LR Schedules for
Heterogeneous Tasks", TPAMI 2022): the schedule network ``A(f; θ)`` reads the
training loss ``f`` and returns a factor in ``(0, 1)``; the learning rate is
``α = γ · A(f; θ)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "STAGE_SCALES",
    "stage_gamma",
    "mlrsnet_cell",
    "mlrsnet_forward",
    "sgd_direction",
    "lookahead",
    "lr_meta_gradient",
    "paper_gamma",
]

# One LSTM layer's parameters: (i2h_0.weight, i2h_0.bias, i2h_2.weight, i2h_2.bias,
#                               h2h_0.weight, h2h_0.bias, h2h_2.weight, h2h_2.bias)
CellParams = Sequence[Tensor]
# The carried state: (h, c), each of shape [num_layers, hidden_size].
State = tuple[Tensor, Tensor]


def mlrsnet_cell(x: Tensor, h: Tensor, c: Tensor, params: CellParams) -> tuple[Tensor, Tensor]:
    """One step of the MLR-SNet LSTM cell (the layout of the released checkpoints).

    The input and the previous hidden state each go through ``Linear -> ReLU ->
    Linear`` to ``4·H`` pre-activations; the two are summed and split into the
    gates in the order input, forget, cell (tanh), output, without a forget-gate
    offset::

        z = W2ᵢ relu(W1ᵢ x + b1ᵢ) + b2ᵢ + W2ₕ relu(W1ₕ h + b1ₕ) + b2ₕ
        i, f, g, o = σ(z₁), σ(z₂), tanh(z₃), σ(z₄)
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

    Args:
        x: Input, shape ``[input_size]`` (the loss, for the first layer).
        h: Previous hidden state, shape ``[H]``.
        c: Previous cell state, shape ``[H]``.
        params: The eight tensors of the layer (see ``CellParams``).

    Returns:
        The new ``(h, c)``.

    Example:
        >>> import torch
        >>> H, P = 4, 3
        >>> ps = [torch.zeros(P, 1), torch.zeros(P), torch.zeros(4 * H, P), torch.zeros(4 * H),
        ...       torch.zeros(P, H), torch.zeros(P), torch.zeros(4 * H, P), torch.zeros(4 * H)]
        >>> h, c = mlrsnet_cell(torch.ones(1), torch.zeros(H), torch.zeros(H), ps)
        >>> h.shape
        torch.Size([4])
    """
    wi1, bi1, wi2, bi2, wh1, bh1, wh2, bh2 = params
    z = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, wi1, bi1)), wi2, bi2)
    z = z + torch.nn.functional.linear(
        torch.relu(torch.nn.functional.linear(h, wh1, bh1)), wh2, bh2
    )
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
    c_new = torch.sigmoid(z_f) * c + torch.sigmoid(z_i) * torch.tanh(z_g)
    h_new = torch.sigmoid(z_o) * torch.tanh(c_new)
    return h_new, c_new


def mlrsnet_forward(
    loss: Tensor,
    state: State,
    cells: Sequence[CellParams],
    head_weight: Tensor,
    head_bias: Tensor,
) -> tuple[Tensor, State]:
    """The schedule network ``A(f; θ)``: loss and state in, factor and new state out.

    This is the readable reference; :class:`mlrsnet.MLRSNetLR` has a faster
    path for CPU that is tested against it.

    Args:
        loss: The training loss, a 0-d tensor.
        state: ``(h, c)``, each ``[num_layers, H]``.
        cells: The parameters of each LSTM layer, first layer first.
        head_weight: Output layer weight, ``[1, H]``.
        head_bias: Output layer bias, ``[1]``.

    Returns:
        ``(factor, (h, c))``: the factor in ``(0, 1)`` as a 0-d tensor and the new
        state.

    Example:
        >>> import torch
        >>> from mlrsnet import MLRSNet
        >>> net = MLRSNet()
        >>> factor, state = mlrsnet_forward(torch.tensor(2.3), net.init_state(),
        ...                                 net.cell_params(), net.head.weight, net.head.bias)
        >>> 0 < factor.item() < 1
        True
    """
    h_prev, c_prev = state
    x = loss.reshape(1)
    hs, cs = [], []
    for layer, params in enumerate(cells):
        h, c = mlrsnet_cell(x, h_prev[layer], c_prev[layer], params)
        hs.append(h)
        cs.append(c)
        x = h
    factor = torch.sigmoid(torch.nn.functional.linear(x, head_weight, head_bias)).reshape(())
    return factor, (torch.stack(hs), torch.stack(cs))


def sgd_direction(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> Tensor:
    """The direction ``d`` of one ``torch.optim.SGD`` step, so that ``w' = w − lr · d``.

    Mirrors torch's SGD exactly, without modifying anything::

        g ← −g if maximize;   g ← g + λ w
        b ← g                         (first step: no buffer yet)
        b ← μ b + (1 − τ) g           (otherwise)
        d ← g + μ b if nesterov else b    (d ← g when μ = 0)

    Args:
        param: The parameter ``w``.
        grad: Its gradient.
        momentum_buffer: The optimizer's ``momentum_buffer`` for ``w`` or ``None``
            before the first step.
        momentum: ``μ``.
        dampening: ``τ``.
        weight_decay: ``λ``.
        nesterov: Nesterov momentum.
        maximize: Maximise instead of minimise.

    Returns:
        The direction ``d`` (a new tensor).

    Example:
        >>> import torch
        >>> w, g = torch.tensor([1.0]), torch.tensor([0.5])
        >>> sgd_direction(w, g, None, weight_decay=0.1)
        tensor([0.6000])
    """
    d = -grad if maximize else grad
    if weight_decay != 0:
        d = d.add(param, alpha=weight_decay)
    if momentum != 0:
        if momentum_buffer is None:
            buf = d
        else:
            buf = momentum_buffer.mul(momentum).add(d, alpha=1 - dampening)
        d = d.add(buf, alpha=momentum) if nesterov else buf
    return d


def lookahead(
    params: Sequence[Tensor], directions: Sequence[Tensor], lr: Tensor | float
) -> list[Tensor]:
    """One SGD lookahead ``w' = w − lr · d`` for each parameter.

    Example:
        >>> import torch
        >>> lookahead([torch.tensor([1.0])], [torch.tensor([2.0])], 0.25)
        [tensor([0.5000])]
    """
    return [p - lr * d for p, d in zip(params, directions, strict=True)]


def lr_meta_gradient(meta_grads: Sequence[Tensor], directions: Sequence[Tensor]) -> Tensor:
    """``∂ meta_loss / ∂ lr`` for a lookahead ``w' = w − lr · d``.

    The lookahead is linear in the scalar learning rate, so by the chain rule
    ``∂ℓ(w')/∂lr = −⟨∇ℓ(w'), d⟩``; no second-order term appears. The gradient for
    the schedule network then is this scalar times ``∂lr/∂θ``.

    Args:
        meta_grads: ``∇ℓ(w')`` for each lookahead parameter.
        directions: The matching directions ``d``.

    Returns:
        A 0-d tensor.

    Example:
        >>> import torch
        >>> lr_meta_gradient([torch.tensor([1.0, 2.0])], [torch.tensor([3.0, 4.0])])
        tensor(-11.)
    """
    total = None
    for g, d in zip(meta_grads, directions, strict=True):
        term = torch.dot(g.reshape(-1), d.reshape(-1))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("lr_meta_gradient needs at least one parameter")
    return -total


def paper_gamma(initial_loss: float, num_classes: int, *, language_model: bool = False) -> float:
    """The paper's rule for the scale ``γ`` of a new task.

    The authors' code sets, from the training loss ``L₀`` of the model before a
    stage starts and the number of classes ``C`` (vocabulary size for language
    models)::

        γ = | √L₀ · ln(L₀ · C) / C^¼ / 4 |

    Hazards, handled here: the logarithm is undefined for ``L₀ · C ≤ 0`` and the
    scale vanishes at ``L₀ · C = 1``; below 1 the sign flips and the authors'
    transfer code takes the absolute value (their meta-training code does not,
    and would train with a negative learning rate). We follow the transfer code,
    warn when ``L₀ · C < 1``, and raise for inputs where the rule gives no usable
    scale.

    The authors' language-model script plugs the initial training *perplexity*
    ``exp(L₀)`` into the same rule (and feeds the network ``loss / ln C``, see
    ``MLRSNetLR(loss_scale=...)``); ``language_model=True`` does that. (Their
    script reads a variable that is only defined later, ``test_perp``; the
    initial training perplexity it prints just before is evidently what is
    meant.)

    Args:
        initial_loss: Mean training loss ``L₀`` (cross-entropy, in nats).
        num_classes: ``C ≥ 2`` (the vocabulary size for language models).
        language_model: Use the perplexity ``exp(L₀)`` in place of ``L₀``.

    Returns:
        ``γ > 0``.

    Raises:
        TypeError: If ``num_classes`` is not an integer.
        ValueError: If ``initial_loss`` is not finite or not positive, if
            ``num_classes < 2``, or if the rule gives a zero or non-finite scale.

    Example:
        >>> round(paper_gamma(2.3026, 10), 4)  # an untrained 10-class model
        0.6691
        >>> round(paper_gamma(9.2103, 10_000, language_model=True), 2)  # an untrained PTB model
        46.05
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    loss = float(initial_loss)
    if not math.isfinite(loss) or loss <= 0:
        raise ValueError(f"initial_loss must be finite and > 0, got {initial_loss!r}")
    if language_model:
        if loss > 700:
            raise ValueError(
                f"initial_loss {loss} is too large for exp(): not a per-token cross-entropy"
            )
        loss = math.exp(loss)
    product = loss * num_classes
    if product < 1:
        warnings.warn(
            f"paper_gamma: initial_loss * num_classes = {product:.4g} < 1, where the paper's "
            "rule changes sign; taking its absolute value as the authors' transfer code does",
            RuntimeWarning,
            stacklevel=2,
        )
    gamma = abs(math.sqrt(loss) * math.log(product) / num_classes**0.25 / 4)
    if not math.isfinite(gamma) or gamma == 0:
        raise ValueError(
            f"paper_gamma: the rule gives gamma = {gamma} for initial_loss={loss}, "
            f"num_classes={num_classes} (initial_loss * num_classes = 1); set the scale yourself"
        )
    return gamma


#: The scale policies of :func:`stage_gamma` (and of ``MLRSNetLR(stage_scale=...)``).
STAGE_SCALES = ("fixed", "paper", "paper-guarded")


def stage_gamma(
    policy: str,
    gamma: float,
    loss: float,
    num_classes: int,
    *,
    language_model: bool = False,
) -> tuple[float, str | None]:
    """The scale ``γ`` for the next stage of the paper's transfer protocol; never raises.

    Policies:

    - ``"fixed"``: keep ``γ``.
    - ``"paper"``: the paper's rule (:func:`paper_gamma`) of the current training loss, as the
      authors' transfer code does at every stage; where the rule gives no usable value (a
      loss that is not finite or not positive, or ``L·C = 1`` exactly) ``γ`` is kept.
    - ``"paper-guarded"``: the rule only while ``L·C ≥ e`` (for language models the
      perplexity ``exp(L)`` takes the place of ``L``). Below that the logarithm in the rule
      drives ``γ`` towards 0 at ``L·C = 1`` and flips its sign under it: on easy tasks the
      loss at the first switch is already there (digits: ``L ≈ 0.05–0.1`` with ``C = 10``)
      and the rule nearly stops training, so ``γ`` is kept instead — measured in
      BENCHMARKS.md, holding it gains 0.2–0.6 points.

    Args:
        policy: One of :data:`STAGE_SCALES`.
        gamma: The scale in use (returned where the policy keeps it).
        loss: The current training loss (mean cross-entropy, nats).
        num_classes: ``C`` (the vocabulary size for language models).
        language_model: The rule reads the perplexity ``exp(L)``.

    Returns:
        ``(new_gamma, note)``: ``note`` says why ``γ`` was kept where the rule was not used,
        else ``None``.

    Example:
        >>> stage_gamma("paper", 0.67, 2.3026, 10)[0] == paper_gamma(2.3026, 10)
        True
        >>> stage_gamma("paper-guarded", 0.67, 0.08, 10)
        (0.67, 'loss * num_classes = 0.8 < e: the rule is near its zero at 1; gamma kept')
        >>> stage_gamma("paper", 0.67, 0.0, 10)[0]
        0.67
    """
    if policy not in STAGE_SCALES:
        raise ValueError(f"stage scale policy must be one of {STAGE_SCALES}, got {policy!r}")
    if policy == "fixed":
        return gamma, None
    if not (math.isfinite(loss) and loss > 0) or (language_model and loss > 700):
        return gamma, f"training loss {loss!r} gives no scale; gamma kept"
    effective = math.exp(loss) if language_model else loss
    product = effective * num_classes
    if policy == "paper-guarded" and product < math.e:
        return gamma, (
            f"loss * num_classes = {product:.3g} < e: the rule is near its zero at 1; gamma kept"
        )
    with warnings.catch_warnings():  # below L·C = 1 the rule takes |.|, as the authors' code
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return paper_gamma(loss, num_classes, language_model=language_model), None
        except ValueError as err:
            return gamma, f"{err}; gamma kept"
