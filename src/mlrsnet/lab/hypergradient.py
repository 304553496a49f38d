"""Adaptive-step-size optimizers used as baselines: SGD-HD, RTHO and L4.

All three are written from the equations of their papers as
:class:`torch.optim.Optimizer` subclasses, so that they save and restore
through the usual ``state_dict`` machinery:

* :class:`SGDHD` -- hypergradient descent on the learning rate
  (Baydin et al., "Online Learning Rate Adaptation with Hypergradient
  Descent", ICLR 2018).
* :class:`RTHOSGD` -- real-time hyperparameter optimisation of the learning
  rate with a forward-mode tangent (Franceschi et al., "Forward and Reverse
  Gradient-Based Hyperparameter Optimization", ICML 2017).
* :class:`L4` -- loss-based step size on top of a momentum or Adam direction
  (Rolinek & Martius, "L4: Practical loss-based stepsize adaptation for deep
  learning", NeurIPS 2018).

Every learning-rate update is guarded: when the loss or the hypergradient is
not finite, the update is skipped and the last finite learning rate is kept,
so a non-finite value never reaches a parameter group's ``lr``.

The training-loop protocol around these optimizers (backward pass, gradient
clipping, validation closures) lives in :mod:`mlrsnet.lab.baselines`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from mlrsnet.checks import number

logger = logging.getLogger(__name__)

__all__ = ["L4", "RTHOSGD", "SGDHD", "hessian_vector_product"]


def _finite(x: float) -> bool:
    return math.isfinite(x)


def _sum_scalars(terms: list[Tensor]) -> float:
    """Sum 0-d tensors with one host synchronisation per device."""
    by_device: dict[torch.device, list[Tensor]] = {}
    for t in terms:
        by_device.setdefault(t.device, []).append(t.reshape(()))
    return float(sum(float(torch.stack(ts).sum()) for ts in by_device.values()))


def hessian_vector_product(
    grads: Sequence[Tensor | None],
    params: Sequence[Tensor],
    vectors: Sequence[Tensor],
    *,
    retain_graph: bool = False,
) -> list[Tensor]:
    r"""Hessian-vector product :math:`H v` by double backward (Pearlmutter's trick).

    ``grads`` must be the gradients of a scalar loss with respect to
    ``params``, computed with ``create_graph=True``. The product is
    :math:`\nabla_w (\nabla_w L \cdot v)`, computed without forming :math:`H`.

    Args:
        grads: ``torch.autograd.grad(loss, params, create_graph=True)``; entries
            may be ``None`` for parameters the loss does not depend on.
        params: The parameters the gradients were taken with respect to.
        vectors: One tensor per parameter, the vector to multiply with.
        retain_graph: Keep the graph for another product.

    Returns:
        One tensor per parameter (zeros where the loss does not depend on it).

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> loss = (w**3).sum()  # H = diag(6 w)
        >>> (g,) = torch.autograd.grad(loss, [w], create_graph=True)
        >>> hessian_vector_product([g], [w], [torch.tensor([1.0, 1.0])])[0]
        tensor([ 6., 12.])
    """
    pairs = [(g, p, v) for g, p, v in zip(grads, params, vectors, strict=True) if g is not None]
    out: list[Tensor] = [torch.zeros_like(p) for p in params]
    if not pairs or not any(g.requires_grad for g, _, _ in pairs):
        return out
    live = [(g, p, v) for g, p, v in pairs if g.requires_grad]
    hv = torch.autograd.grad(
        [g for g, _, _ in live],
        [p for _, p, _ in live],
        grad_outputs=[v for _, _, v in live],
        retain_graph=retain_graph,
        allow_unused=True,
    )
    index = {id(p): i for i, p in enumerate(params)}
    for (_, p, _), h in zip(live, hv, strict=True):
        if h is not None:
            out[index[id(p)]] = h.detach()
    return out


class SGDHD(Optimizer):
    r"""SGD with hypergradient descent on the learning rate (SGD-HD / SGDN-HD).

    Baydin, Cornish, Martinez Rubio, Schmidt & Wood, "Online Learning Rate
    Adaptation with Hypergradient Descent", ICLR 2018, Algorithm 1. With
    :math:`g_t = \nabla f(\theta_{t-1})` (plus the L2 term
    :math:`\lambda\theta_{t-1}` when ``weight_decay`` is set) and
    :math:`u_t = -\alpha_t d_t` the update, the hypergradient is
    :math:`h_t = g_t \cdot \nabla_\alpha u_{t-1} = -g_t \cdot d_{t-1}` and

    .. math::
        \alpha_t = \alpha_{t-1} - \beta h_t = \alpha_{t-1} + \beta\, g_t \cdot d_{t-1},
        \qquad \theta_t = \theta_{t-1} - \alpha_t d_t,

    where the direction is :math:`d_t = g_t` for plain SGD,
    :math:`d_t = b_t = \mu b_{t-1} + g_t` for heavy-ball momentum and
    :math:`d_t = g_t + \mu b_t` for Nesterov momentum (SGDN-HD). This is the
    authors' reference formulation (``d_{-1} = 0``, so the first step uses
    :math:`\alpha_0`). The learning rate is one scalar per parameter group;
    the dot product runs over that group's parameters. As in the paper, the
    learning rate is not clipped; if the hypergradient or the new learning
    rate is not finite the update is skipped and the last finite value kept.

    Args:
        params: Parameters or parameter groups.
        lr: Initial learning rate :math:`\alpha_0`.
        hyper_lr: Hypergradient learning rate :math:`\beta` (paper: 1e-3 for
            SGD-HD and SGDN-HD).
        momentum: Momentum factor :math:`\mu` (0 for plain SGD-HD).
        nesterov: Use the Nesterov direction (SGDN-HD).
        weight_decay: L2 coefficient added to the gradient.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> opt = SGDHD([w], lr=0.1, hyper_lr=1e-3)
        >>> for _ in range(2):
        ...     opt.zero_grad()
        ...     (0.5 * (w**2).sum()).backward()
        ...     opt.step()
        >>> round(opt.param_groups[0]["lr"], 6)  # 0.1 + 1e-3 * (0.9*1 + 1.8*2)
        0.1045
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        hyper_lr: float = 1e-3,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        number("lr", lr, 0.0)
        number("hyper_lr", hyper_lr, 0.0)
        number("weight_decay", weight_decay, 0.0)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True requires momentum > 0")
        defaults = dict(
            lr=float(lr),
            hyper_lr=float(hyper_lr),
            momentum=float(momentum),
            nesterov=bool(nesterov),
            weight_decay=float(weight_decay),
            hypergradient=0.0,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update the learning rate by its hypergradient, then take an SGD step.

        Args:
            closure: Optional closure re-evaluating the loss (with backward).

        Returns:
            The closure's loss, if one was given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, mu = group["weight_decay"], group["momentum"]
            active = [p for p in group["params"] if p.grad is not None]
            for p in group["params"]:
                if p.grad is None:  # it does not move: no direction of the last step
                    self.state[p].pop("prev_direction", None)
            grads = [p.grad.add(p, alpha=wd) if wd != 0.0 else p.grad for p in active]
            dots = []
            for p, g in zip(active, grads, strict=True):
                prev = self.state[p].get("prev_direction")
                if prev is not None:
                    dots.append(torch.dot(g.flatten(), prev.flatten()))
            h = _sum_scalars(dots)
            new_lr = group["lr"] + group["hyper_lr"] * h
            if _finite(h) and _finite(new_lr):
                group["lr"] = new_lr
                group["hypergradient"] = -h  # h_t in the paper's sign convention
            else:
                logger.warning(
                    "SGDHD: non-finite hypergradient (%r); keeping lr=%g", h, group["lr"]
                )
            lr = group["lr"]
            for p, g in zip(active, grads, strict=True):
                state = self.state[p]
                if mu != 0.0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.clone()
                    else:
                        buf.mul_(mu).add_(g)
                    d = g.add(buf, alpha=mu) if group["nesterov"] else buf
                else:
                    d = g
                state["prev_direction"] = d.clone()
                p.add_(d, alpha=-lr)
        return loss


class RTHOSGD(Optimizer):
    r"""(Momentum) SGD whose learning rate is tuned online by RTHO.

    Franceschi, Donini, Frasconi & Pontil, "Forward and Reverse Gradient-Based
    Hyperparameter Optimization", ICML 2017, Section 3 (Real-Time HO,
    Algorithm 3). The training dynamics with state :math:`s_t = (w_t, v_t)`
    are heavy-ball SGD,

    .. math::
        v_t = \mu v_{t-1} + g_t, \qquad w_t = w_{t-1} - \eta v_t,

    with :math:`g_t = \nabla L_t(w_{t-1})` (plus :math:`\lambda w_{t-1}`).
    The forward-mode tangent :math:`Z_t = (dw_t/d\eta, dv_t/d\eta)` follows
    :math:`Z_t = A_t Z_{t-1} + B_t` with :math:`H_t = \nabla^2 L_t(w_{t-1})`:

    .. math::
        Z^v_t = \mu Z^v_{t-1} + H_t Z^w_{t-1}, \qquad
        Z^w_t = Z^w_{t-1} - \eta Z^v_t - v_t,

    which for :math:`\mu = 0` is :math:`Z_t = Z_{t-1} - \eta H_t Z_{t-1} - g_t`.
    Every ``hyper_interval`` steps the learning rate takes a projected
    hypergradient step on a validation loss :math:`E`:

    .. math::
        \eta \leftarrow \max(\eta - \beta\, \nabla E(w_t) \cdot Z^w_t,\ 0).

    Only :math:`\eta` is a hyperparameter here (the paper also tunes
    :math:`\mu`). A single :math:`\eta` is shared by all parameter groups
    (the tangent is one vector), so all groups must start with the same
    ``lr``. :math:`H_t Z^w_{t-1}` is supplied to :meth:`step` by the caller,
    normally via :meth:`gradients_and_hvps`.

    Args:
        params: Parameters or parameter groups.
        lr: Initial learning rate :math:`\eta_0`.
        momentum: Heavy-ball momentum :math:`\mu` (torch.optim.SGD convention).
        weight_decay: L2 coefficient :math:`\lambda` (enters the gradient and,
            as :math:`\lambda I`, the Hessian).
        hyper_lr: Hyper learning rate :math:`\beta`.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = RTHOSGD([w], lr=0.1, hyper_lr=0.01)
        >>> hvps = opt.gradients_and_hvps((w**2).sum())
        >>> opt.step(hvps=hvps)
        >>> opt.tangents()[0]  # Z_1 = -g_1
        tensor([-2.,  2.])
        >>> val = ((w - 1) ** 2).sum()
        >>> h = opt.hypergradient(torch.autograd.grad(val, [w]))
        >>> opt.update_lr(h)
        True
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        hyper_lr: float = 1e-4,
    ) -> None:
        number("lr", lr, 0.0)
        number("hyper_lr", hyper_lr, 0.0)
        number("weight_decay", weight_decay, 0.0)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        defaults = dict(
            lr=float(lr),
            momentum=float(momentum),
            weight_decay=float(weight_decay),
            hyper_lr=float(hyper_lr),
            hypergradient=0.0,
        )
        super().__init__(params, defaults)
        lrs = {g["lr"] for g in self.param_groups}
        if len(lrs) != 1:
            raise ValueError(f"RTHOSGD tunes one shared lr; groups have lrs {sorted(lrs)}")

    @property
    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def tangents(self) -> list[Tensor]:
        """Return :math:`Z^w = dw/d\\eta`, one tensor per parameter (zeros before step 1)."""
        return [self.state[p].get("z_w", torch.zeros_like(p)) for p in self._params]

    def gradients_and_hvps(self, loss: Tensor, *, clip_norm: float | None = None) -> list[Tensor]:
        """Backward pass for one RTHO step.

        Computes :math:`\\nabla L` with ``create_graph=True``, stores it
        (detached) in ``p.grad``, optionally clips it to ``clip_norm`` and
        returns :math:`c\\, H Z^w_{t-1}` with the same clipping coefficient
        :math:`c` (the coefficient is treated as a constant when
        differentiating, an approximation only active when clipping bites).

        Args:
            loss: Scalar training loss with its graph.
            clip_norm: Maximum global gradient norm, or ``None``.

        Returns:
            One Hessian-vector product per parameter, to pass to :meth:`step`.
        """
        params = [p for p in self._params if p.requires_grad]
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.detach().clone()
        coef = 1.0
        if clip_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
            if math.isfinite(norm):
                coef = min(1.0, clip_norm / (norm + 1e-6))
        z = [self.state[p].get("z_w") for p in params]
        if all(t is None for t in z):
            hv = [torch.zeros_like(p) for p in params]
        else:
            vecs = [torch.zeros_like(p) if t is None else t for p, t in zip(params, z, strict=True)]
            hv = hessian_vector_product(grads, params, vecs)
        if coef != 1.0:
            hv = [h.mul(coef) for h in hv]
        by_id = {id(p): h for p, h in zip(params, hv, strict=True)}
        return [by_id.get(id(p), torch.zeros_like(p)) for p in self._params]

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Tensor] | None = None,
        *,
        hvps: Sequence[Tensor] | None = None,
    ) -> Tensor | None:
        """Advance weights, momentum and the tangent by one step.

        Args:
            closure: Optional closure re-evaluating the loss. The tangent then
                has no curvature term unless ``hvps`` is given too.
            hvps: :math:`H_t Z^w_{t-1}` for every parameter (in
                ``param_groups`` order), without the weight-decay part;
                ``None`` means zero (exact on the first step).

        Returns:
            The closure's loss, if one was given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params
        hv_by_id = {} if hvps is None else {id(p): h for p, h in zip(params, hvps, strict=True)}
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                g = p.grad.add(p, alpha=wd) if wd != 0.0 else p.grad
                z_w = state.get("z_w")
                if z_w is None:
                    z_w = state["z_w"] = torch.zeros_like(p)
                hz = hv_by_id.get(id(p))
                hz = torch.zeros_like(p) if hz is None else hz.to(p.device, p.dtype)
                if wd != 0.0:
                    hz = hz.add(z_w, alpha=wd)
                if mu != 0.0:
                    z_v = state.get("z_v")
                    if z_v is None:
                        z_v = state["z_v"] = torch.zeros_like(p)
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.clone()
                    else:
                        buf.mul_(mu).add_(g)
                    z_v.mul_(mu).add_(hz)
                    z_w.sub_(z_v, alpha=lr).sub_(buf)
                    p.sub_(buf, alpha=lr)
                else:
                    z_w.sub_(hz, alpha=lr).sub_(g)
                    p.sub_(g, alpha=lr)
        if not all(bool(torch.isfinite(self.state[p]["z_w"]).all()) for p in self._tracked()):
            logger.warning("RTHOSGD: non-finite tangent; resetting Z to zero")
            for p in self._tracked():
                for key in ("z_w", "z_v"):
                    if key in self.state[p]:
                        self.state[p][key].zero_()
        return loss

    def _tracked(self) -> list[Tensor]:
        return [p for p in self._params if "z_w" in self.state[p]]

    @torch.no_grad()
    def hypergradient(self, val_grads: Sequence[Tensor | None]) -> float:
        """Return :math:`\\nabla E(w_t) \\cdot Z^w_t`.

        Args:
            val_grads: Gradient of the validation loss, one entry per parameter
                in ``param_groups`` order (``None`` for unused parameters).
        """
        dots = []
        for p, g in zip(self._params, val_grads, strict=True):
            z = self.state[p].get("z_w")
            if g is not None and z is not None:
                dots.append(torch.dot(g.flatten(), z.to(g.device, g.dtype).flatten()))
        return _sum_scalars(dots)

    def update_lr(self, hypergrad: float) -> bool:
        """Take the projected step :math:`\\eta \\leftarrow \\max(\\eta - \\beta h, 0)`.

        Args:
            hypergrad: :math:`h = \\nabla E \\cdot Z^w`.

        Returns:
            ``True`` if the learning rate was updated, ``False`` if it was kept
            because ``hypergrad`` (or the result) was not finite.
        """
        group0 = self.param_groups[0]
        new_lr = max(group0["lr"] - group0["hyper_lr"] * hypergrad, 0.0)
        if not (_finite(hypergrad) and _finite(new_lr)):
            logger.warning(
                "RTHOSGD: non-finite hypergradient (%r); keeping lr=%g", hypergrad, group0["lr"]
            )
            return False
        for group in self.param_groups:
            group["lr"] = new_lr
            group["hypergradient"] = hypergrad
        return True


class L4(Optimizer):
    r"""L4 loss-based step size on a momentum (L4Mom) or Adam (L4Adam) direction.

    Rolinek & Martius, "L4: Practical loss-based stepsize adaptation for deep
    learning", NeurIPS 2018, Section 2 (eq. 5-7), with the authors' reference
    implementation for the estimators. With :math:`\hat g_t` the
    bias-corrected EMA of gradients (decay ``beta1``, i.e. time scale 10),
    :math:`v_t` the update direction (:math:`\hat g_t` for L4Mom; the Adam
    direction :math:`\hat g_t/(\sqrt{\hat s_t}+\epsilon_a)` for L4Adam) and
    :math:`L_{\min}` an estimate of the attainable loss:

    .. math::
        \eta_t = \alpha\, \frac{L_t - \gamma L_{\min}}{\hat g_t \cdot v_t + \epsilon},
        \qquad \theta_t = \theta_{t-1} - \eta_t v_t .

    :math:`L_{\min}` is initialised to :math:`\gamma_0 L_0` on the first step,
    set to :math:`\min(L_{\min}, L_t)` on later steps and multiplied by
    :math:`1 + 1/\tau` after every step, so that it can recover from
    estimates that are too low. Defaults are the paper's: :math:`\alpha =
    0.15`, :math:`\gamma = 0.9`, :math:`\gamma_0 = 0.75`, :math:`\tau = 1000`,
    :math:`\epsilon = 10^{-12}`, :math:`\epsilon_a = 10^{-4}`.

    With ``weight_decay`` :math:`\lambda > 0` L4 works on the regularised
    objective: :math:`\lambda\theta` is added to the gradient and
    :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` to the loss value. The step
    size is global (all parameter groups); the L4 hyperparameters and
    :math:`L_{\min}` live in the first group, :math:`\eta_t` is written to
    every group's ``lr``. The loss must be non-negative for the rule to be
    meaningful. If the loss or :math:`\eta_t` is not finite, the last finite
    step size is reused (0 before the first finite step).

    Args:
        params: Parameters or parameter groups.
        alpha: Fraction :math:`\alpha` of the "optimal" step.
        direction: ``"momentum"`` (L4Mom) or ``"adam"`` (L4Adam).
        beta1: EMA decay of the gradient estimate (and momentum direction).
        beta2: EMA decay of squared gradients (L4Adam).
        adam_eps: :math:`\epsilon_a` in the Adam direction.
        gamma: :math:`\gamma`, fraction of :math:`L_{\min}` deemed attainable.
        gamma0: :math:`\gamma_0`, initial :math:`L_{\min}` as a fraction of :math:`L_0`.
        tau: :math:`\tau`, forgetting time of :math:`L_{\min}` (steps).
        eps: :math:`\epsilon` in the denominator.
        weight_decay: L2 coefficient :math:`\lambda`.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([2.0]))
        >>> opt = L4([w])
        >>> loss = 0.5 * (w**2).sum()
        >>> loss.backward()
        >>> _ = opt.step(loss=loss)
        >>> round(opt.param_groups[0]["lr"], 6)  # 0.15 * (2 - 0.9 * 1.5) / 4
        0.024375
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        alpha: float = 0.15,
        direction: str = "momentum",
        beta1: float = 0.9,
        beta2: float = 0.999,
        adam_eps: float = 1e-4,
        gamma: float = 0.9,
        gamma0: float = 0.75,
        tau: float = 1000.0,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
    ) -> None:
        if not (math.isfinite(alpha) and alpha > 0.0):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        if direction not in ("momentum", "adam"):
            raise ValueError(f"direction must be 'momentum' or 'adam', got {direction!r}")
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        if not tau > 0.0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        number("weight_decay", weight_decay, 0.0)
        number("gamma", gamma, 0.0)
        number("gamma0", gamma0, 0.0)
        if not (eps > 0.0 and adam_eps > 0.0):
            raise ValueError("eps and adam_eps must be > 0")
        defaults = dict(
            lr=0.0,
            alpha=float(alpha),
            direction=direction,
            beta1=float(beta1),
            beta2=float(beta2),
            adam_eps=float(adam_eps),
            gamma=float(gamma),
            gamma0=float(gamma0),
            tau=float(tau),
            eps=float(eps),
            weight_decay=float(weight_decay),
            min_loss=None,
            l4_step=0,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Tensor] | None = None,
        *,
        loss: Tensor | float | None = None,
    ) -> Tensor | None:
        """Take one L4 step; needs the current loss value.

        Args:
            closure: Optional closure returning the loss (with backward done).
            loss: The loss at the current parameters, if no closure is given.

        Returns:
            The loss used.
        """
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if loss is None:
            raise ValueError("L4.step needs the loss value: pass loss= or a closure")
        g0 = self.param_groups[0]
        b1, b2, direction = g0["beta1"], g0["beta2"], g0["direction"]
        t = g0["l4_step"] + 1
        value = float(loss.detach() if isinstance(loss, Tensor) else loss)
        pairs: list[tuple[Tensor, Tensor]] = []
        dots: list[Tensor] = []
        sq_norms: list[Tensor] = []
        for group in self.param_groups:
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if wd != 0.0:
                    sq_norms.append(p.pow(2).sum() * (0.5 * wd))
                g = p.grad.add(p, alpha=wd) if wd != 0.0 else p.grad
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                    if direction == "adam":
                        state["exp_avg_sq"] = torch.zeros_like(p)
                m = state["exp_avg"].mul_(b1).add_(g, alpha=1.0 - b1)
                g_hat = m / (1.0 - b1**t)
                if direction == "adam":
                    s = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1.0 - b2)
                    v = g_hat / ((s / (1.0 - b2**t)).sqrt_().add_(g0["adam_eps"]))
                else:
                    v = g_hat
                dots.append(torch.dot(g_hat.flatten(), v.flatten()))
                pairs.append((p, v))
        dot = _sum_scalars(dots)
        value += _sum_scalars(sq_norms)
        min_loss = g0["min_loss"]
        if _finite(value):
            min_loss = g0["gamma0"] * value if min_loss is None else min(min_loss, value)
        lr = g0["lr"]
        if min_loss is not None and _finite(value):
            candidate = g0["alpha"] * (value - g0["gamma"] * min_loss) / (dot + g0["eps"])
            if _finite(candidate):
                lr = candidate
            else:
                logger.warning("L4: non-finite step size; keeping lr=%g", lr)
        else:
            logger.warning("L4: non-finite loss %r; keeping lr=%g", value, lr)
        for p, v in pairs:
            p.sub_(v, alpha=lr)
        if min_loss is not None:
            min_loss *= 1.0 + 1.0 / g0["tau"]
        g0["min_loss"] = min_loss
        g0["l4_step"] = t
        for group in self.param_groups:
            group["lr"] = lr
        return loss if isinstance(loss, Tensor) else None
