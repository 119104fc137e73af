"""The reference tasks of the cross-country elimination literature, in plain NumPy.

Each task is written the way the Graphax examples (`src/graphax/examples/`) write it,
so that tracing it records one equation per operation in the same order. For the five
scalar tasks the published vertex and multiplication counts refer to exactly these
graphs. The MLP and the transformer encoder are tensor programs, and BlackScholes is
Graphax's own reverse mode of a price; their published counts were made on graphs the
public sources do not rebuild, and are kept apart (`Task.graphax`). `TASKS` maps a name
to (function, argument maker, published counts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special


# --------------------------------------------------------------------------- RoeFlux_1d

GAMMA = 0.5


def _pressure_1d(u0, u1, u2):
    return (GAMMA - 1.0) * (u2 - 0.5 * u1 ** 2 / u0)


def _enthalpy_1d(u0, u4, p):
    return (u4 + p) / u0


def _euler_flux_1d(u0, u1, u2, p):
    v = u1 / u0
    return u1, p + u1 * v, v * (p + u2)


def roe_flux_1d(ul0, ul1, ul2, ur0, ur1, ur2):
    """Roe's approximate Riemann flux for the 1-d Euler equations (Roe 1981)."""
    du0 = ur0 - ul0
    ulr0 = np.sqrt(ul0 * ur0)
    w1 = np.sqrt(ul0) + np.sqrt(ur0)

    vl = ul1 / ul0
    pl = _pressure_1d(ul0, ul1, ul2)
    hl = _enthalpy_1d(ul0, ul2, pl)
    vr = ur1 / ur0
    pr = _pressure_1d(ur0, ur1, ur2)
    hr = _enthalpy_1d(ur0, ur2, pr)
    dp = pr - pl
    dv = vr - vl

    u = (np.sqrt(ul0) * vl + np.sqrt(ur0) * vr) / w1
    h = (np.sqrt(ul0) * hl + np.sqrt(ur0) * hr) / w1
    q2 = u ** 2
    a2 = (GAMMA - 1.0) * (h - 0.5 * q2)
    a = np.sqrt(a2)
    lp = np.abs(u + a)
    l = np.abs(u)
    ln = np.abs(u)

    n = a * ulr0
    c0 = (du0 - dp / a2) * l
    c1 = (dv + dp / n) * lp
    c2 = (dv - dp / n) * ln

    fl0, fl1, fl2 = _euler_flux_1d(ul0, ul1, ul2, pl)
    fr0, fr1, fr2 = _euler_flux_1d(ur0, ur1, ur2, pr)
    f0 = fl0 + fr0
    f1 = fl1 + fr1
    f2 = fl2 + fr2

    c = 0.5 * ulr0 / a
    df0 = c0 + c * c1 - c * c2
    df1 = c0 * u + c * c1 * (u + a) - c * c2 * (u - a)
    df2 = c0 * 0.5 * q2 + c * c1 * (h + u * a) - c * c2 * (h - u * a)
    return 0.5 * (f0 - df0), 0.5 * (f1 - df1), 0.5 * (f2 - df2)


def roe_flux_1d_args(rng, batch=()):
    """Left and right states with positive density and pressure."""
    rho = rng.uniform(0.5, 2.0, (2,) + batch)
    vel = rng.uniform(-0.5, 0.5, (2,) + batch)
    energy = rng.uniform(-4.0, -2.0, (2,) + batch)   # gamma < 1 makes p = -0.5 (E - ...)
    return (rho[0], rho[0] * vel[0], energy[0], rho[1], rho[1] * vel[1], energy[1])


# --------------------------------------------------------------------------- RobotArm_6DOF

def _sin_sum(a, b):
    return np.cos(a) * np.sin(b) + np.sin(a) * np.cos(b)


def _cos_sum(a, b):
    return np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b)


def robot_arm_6dof(t1, t2, t3, t4, t5, t6):
    """Forward kinematics (position and Tait-Bryan angles) of a 6-joint robot arm."""
    a1, a2, a3 = 175.0, 890.0, 50.0
    d1, d4, d6 = 575.0, 1035.0, 185.0
    c1, c2, c4, c5, c6 = np.cos(t1), np.cos(t2), np.cos(t4), np.cos(t5), np.cos(t6)
    c23 = _cos_sum(t2, t3)
    s1, s2, s4, s5, s6 = np.sin(t1), np.sin(t2), np.sin(t4), np.sin(t5), np.sin(t6)
    s23 = _sin_sum(t2, t3)

    ax = s5 * (c1 * c23 * c4 + s1 * s4) + c1 * s23 * c5
    ay = s5 * (s1 * c23 * c4 - c1 * s4) + s1 * s23 * c5
    az = s23 * c4 * s5 - c23 * c5
    nz = c6 * (c23 * s5 + s23 * c4 * c5) - s23 * s4 * s6
    oz = -s6 * (c23 * s5 + s23 * c4 * c5) - s23 * s4 * c6

    z = np.arctan2(ay, ax)
    y_ = np.arctan2(np.sqrt(1.0 - az ** 2), az)
    z__ = np.arctan2(oz, -nz)

    x1 = d6 * (s5 * (c1 * c23 * c4 + s1 * s4) + c1 * s23 * c5)
    x2 = c1 * (a1 + a2 * c2 + a3 * c23 + d4 * s23)
    px = x1 + x2
    y1 = d6 * (s5 * (s1 * c23 * c4 + c1 * s4) + s1 * s23 * c5)
    y2 = s1 * (a1 + a2 * c2 + a3 * c23 + d4 * s23)
    py = y1 + y2
    pz = a2 * s2 + d1 + a3 * s23 - d4 * c23 + d6 * (s23 * c4 * s5 - c23 * c5)
    return px, py, pz, z, y_, z__


def robot_arm_6dof_args(rng, batch=()):
    return tuple(rng.uniform(0.1, 1.2, batch) for _ in range(6))


# --------------------------------------------------------------------------- MINPACK

P_PROPANE, R_PROPANE = 40.0, 10.0


def propane_combustion(x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11):
    """Residuals of the propane combustion equilibrium (MINPACK-2, full formulation)."""
    p, r = P_PROPANE, R_PROPANE
    px11 = np.sqrt(p / x11)
    f1 = x1 + x4 - 3.0
    f2 = 2 * x1 + x2 + x4 + x7 + x8 + x9 + 2 * x10 - r
    f3 = 2 * x2 + 2 * x5 + x6 + x7 - 8.0
    f4 = 2 * x3 + x9 - 4 * r
    f5 = x2 * x4 - x1 * x5
    f6 = np.sqrt(x2 * x4) - np.sqrt(x1) * px11 * x6
    f7 = np.sqrt(x1 * x2) - np.sqrt(x4) * x7 * px11
    f8 = x1 - x4 * x8 * p / x11
    f9 = x1 * np.sqrt(x3) - x4 * x9 * px11
    f10 = x1 ** 2 - x4 ** 2 * x10 * p / x11
    f11 = x11 - x1 - x2 - x3 - x4 - x5 - x6 - x7 - x8 - x9 - x10
    return f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11


def propane_combustion_args(rng, batch=()):
    return tuple(rng.uniform(0.5, 2.0, batch) for _ in range(11))


SIGMA = 1.0   # every right-hand side of the dipole system


def human_heart_dipole(x1, x2, x3, x4, x5, x6, x7, x8):
    """Residuals of the human heart dipole system (MINPACK-2), all right-hand sides 1."""
    f1 = x1 + x2 - SIGMA
    f2 = x3 + x4 - SIGMA
    f3 = x5 * x1 + x6 * x2 - x7 * x3 - x8 * x4 - SIGMA
    f4 = x7 * x1 + x8 * x2 + x5 * x3 + x6 * x4 - SIGMA
    x57 = x5 ** 2 - x7 ** 2
    x68 = x6 ** 2 - x8 ** 2
    f5 = x1 * x57 - 2 * x3 * x5 * x7 + x2 * x68 - 2 * x4 * x6 * x8 - SIGMA
    f6 = x3 * x57 - 2 * x1 * x5 * x7 + x4 * x68 - 2 * x2 * x6 * x8 - SIGMA
    x557 = x5 * (x5 ** 2 - 3 * x7 ** 2)
    x775 = x7 * (x7 ** 2 - 3 * x5 ** 2)
    x668 = x6 * (x6 ** 2 - 3 * x8 ** 2)
    x886 = x8 * (x8 ** 2 - 3 * x6 ** 2)
    f7 = x1 * x557 + x3 * x775 + x2 * x668 + x4 * x886 - SIGMA
    f8 = x3 * x557 - x1 * x775 + x4 * x668 - x2 * x886 - SIGMA
    return f1, f2, f3, f4, f5, f6, f7, f8


def human_heart_dipole_args(rng, batch=()):
    return tuple(rng.uniform(-1.0, 1.0, batch) for _ in range(8))


# --------------------------------------------------------------------------- g (random)

def g(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14):
    """A randomly generated scalar program (Graphax's `g`: 15 inputs, 20 outputs)."""
    v15 = np.ones(())
    v16 = np.ones(())
    v17 = np.arctan2(v15, v3)
    v18 = np.power(v15, v14)
    v19 = np.arctan2(v13, v17)
    v20 = np.power(v17, v5)
    v21 = np.subtract(v9, v8)
    v22 = np.arctan(v10)
    v23 = np.multiply(v21, v0)
    v24 = np.subtract(v22, v18)
    v25 = np.power(v24, v11)
    v26 = np.add(v21, v12)
    v27 = np.exp(v2)
    v28 = np.add(v21, v26)
    v29 = np.power(v16, v17)
    v30 = np.sin(v3)
    v31 = np.divide(v2, v23)
    v32 = np.arctan2(v24, v26)
    v33 = np.subtract(v29, v25)
    v34 = np.arctan(v33)
    v35 = np.multiply(v7, v27)
    v36 = np.tan(v13)
    v37 = np.add(v27, v19)
    v38 = np.divide(v7, v6)
    v39 = np.subtract(v25, v34)
    v40 = np.subtract(v29, v6)
    v41 = np.power(v35, v4)
    v42 = np.cos(v0)
    v43 = np.subtract(v40, v19)
    v44 = np.divide(v41, v7)
    v45 = np.subtract(v40, v8)
    v46 = np.arctan2(v16, v43)
    v47 = np.divide(v8, v30)
    v48 = np.power(v37, v36)
    v49 = np.power(v47, v44)
    v50 = np.arctan2(v45, v40)
    v51 = np.arctan2(v44, v13)
    v52 = np.divide(v4, v34)
    v53 = np.arctan2(v41, v1)
    v54 = np.arctan2(v25, v53)
    v55 = np.add(v12, v51)
    v56 = np.power(v3, v48)
    v57 = np.subtract(v24, v32)
    v58 = np.arctanh(v48)
    v59 = np.arctanh(v54)
    v60 = np.arctan2(v2, v26)
    v61 = np.subtract(v52, v18)
    v62 = np.cos(v38)
    v63 = np.divide(v8, v32)
    v64 = np.arctan2(v42, v46)
    v65 = np.sinh(v36)
    v66 = np.subtract(v61, v50)
    v67 = np.power(v13, v39)
    v68 = np.power(v37, v26)
    v69 = np.subtract(v68, v43)
    v70 = np.log(v65)
    v71 = np.power(v23, v58)
    v72 = np.arctan2(v50, v69)
    v73 = np.divide(v20, v72)
    v74 = np.multiply(v41, v56)
    v75 = np.multiply(v39, v33)
    v76 = np.multiply(v61, v15)
    v77 = np.power(v66, v64)
    v78 = np.arctan2(v53, v25)
    v79 = np.subtract(v59, v60)
    v80 = np.arctan2(v73, v41)
    v81 = np.multiply(v74, v46)
    v82 = np.square(v5)
    v83 = np.arctan2(v28, v62)
    v84 = np.arctan2(v39, v9)
    v85 = np.multiply(v4, v12)
    v86 = np.divide(v57, v56)
    v87 = np.arctan2(v61, v63)
    v88 = np.arcsinh(v14)
    v89 = np.power(v86, v83)
    v90 = np.arcsin(v66)
    v91 = np.subtract(v70, v79)
    v92 = np.arctan2(v37, v65)
    v93 = np.multiply(v67, v77)
    v94 = np.power(v87, v55)
    v95 = np.square(v49)
    v96 = np.divide(v92, v94)
    v97 = np.add(v15, v95)
    v98 = np.divide(v91, v76)
    v99 = np.arctanh(v46)
    v100 = np.multiply(v75, v45)
    v101 = np.divide(v100, v28)
    v102 = np.add(v90, v29)
    v103 = np.arctan2(v80, v84)
    v104 = np.subtract(v20, v91)
    v105 = np.add(v82, v90)
    v106 = np.divide(v102, v103)
    v107 = np.power(v75, v42)
    v108 = np.multiply(v68, v62)
    v109 = np.divide(v102, v1)
    v110 = np.power(v98, v101)
    v111 = np.negative(v100)
    v112 = np.divide(v31, v89)
    v113 = np.divide(v105, v108)
    v114 = np.subtract(v22, v70)
    v115 = np.multiply(v106, v44)
    v116 = np.subtract(v107, v81)
    v117 = np.power(v58, v115)
    v118 = np.subtract(v78, v108)
    v119 = np.tan(v87)
    v120 = np.power(v87, v48)
    v121 = np.add(v105, v38)
    return (v121, v71, v85, v88, v93, v96, v97, v99, v104, v109, v110, v111, v112,
            v113, v114, v116, v117, v118, v119, v120)


#: A point where 18 of g's 20 outputs are finite (g takes logarithms, inverse
#: hyperbolic functions and powers of its intermediates far outside their domains).
G_POINT = (0.95, -1.72, -2.0, -2.54, 1.84, -2.03, -0.89, 0.55, -0.16, 1.41, 3.9, 2.14,
           -0.71, 1.37, -0.33)


def g_args(rng, batch=()):
    return tuple(c + rng.uniform(-0.005, 0.005, batch) for c in G_POINT)


# --------------------------------------------------------------------------- MLP

def _variance(x, axis):
    mu = np.mean(x, axis=axis)
    return np.sum((x - mu) ** 2, axis=axis) / x.shape[axis]


def _layer_norm(x, gamma, beta, axis):
    """Graphax's `layer_norm` (the variance computes its own mean). The means are
    subtracted along the last axis: for a matrix normalized over axis 1, column j loses
    the mean of row j, as written there; kept so that the graph is the same."""
    mu = np.mean(x, axis=axis)
    sigma = _variance(x, axis)
    return (x - mu) / np.sqrt(sigma + 1e-6) * gamma + beta


def mlp(x, y, W1, b1, W2, b2, gamma, beta):
    """Squared error of a two-layer tanh perceptron with a layer norm: Graphax's
    `Perceptron` with AlphaGrad's shapes (`make_Perceptron`: 4-8-4, scalar gamma and
    beta), differentiated with respect to everything: a tensor task. The source
    normalizes over axis 1, which a vector does not have; axis 0 is meant."""
    y1 = W1 @ x
    z1 = y1 + b1
    a1 = np.tanh(z1)
    a1 = _layer_norm(a1, gamma, beta, axis=0)
    y2 = W2 @ a1
    z2 = y2 + b2
    a2 = np.tanh(z2)
    d = a2 - y
    e = d ** 2
    return 0.5 * np.sum(e)


MLP_SIZES = (4, 8, 4)   # input, hidden, output


def mlp_args(rng, batch=()):
    n_in, n_hid, n_out = MLP_SIZES
    shapes = [(n_in,), (n_out,), (n_hid, n_in), (n_hid,), (n_out, n_hid), (n_out,), (), ()]
    return tuple(rng.standard_normal(batch + s) * 0.5 for s in shapes)


# --------------------------------------------------------------------------- BlackScholes

#: The error function: SciPy's ufunc, a chainrule primitive once a tracer meets it
#: (the JAX variants of the benchmark swap in jax.scipy.special.erf by this name).
_erf = scipy.special.erf


def _phi_cdf(z):
    return (1.0 + _erf(z / np.sqrt(2.0))) / 2


def _phi_cdf_adjoint(g, z):
    """g * dPhi/dz, written as the reverse sweep through _phi_cdf."""
    a = z / np.sqrt(2.0)
    g_c = g / 2
    g_a = g_c * (2.0 / np.sqrt(np.pi)) * np.exp(-(a * a))
    return g_a / np.sqrt(2.0)


def black_scholes_jacobian(S, K, r, sigma, T):
    """The first-order greeks of a Black-Scholes call (Graphax's `BlackScholes`, via
    Black76), as a reverse sweep written one operation a line; its Jacobian is the
    matrix of second-order greeks. Graphax builds this function with its own reverse
    mode (`BlackScholes_Jacobian`), so its graph is not the same operation for
    operation."""
    v1 = r * T
    v2 = np.exp(v1)
    F = v2 * S
    v4 = F / K
    v5 = np.log(v4)
    v6 = sigma ** 2
    v7 = v6 / 2.0
    v8 = v7 * T
    v9 = v5 + v8
    v10 = np.sqrt(T)
    v11 = sigma * v10
    d1 = v9 / v11
    v13 = np.sqrt(T)
    v14 = sigma * v13
    d2 = d1 - v14
    v16 = -r
    v17 = v16 * T
    disc = np.exp(v17)
    P1 = _phi_cdf(d1)
    P2 = _phi_cdf(d2)
    x = F * P1 - K * P2
    # reverse sweep of disc * x
    g_x = disc
    g_F = g_x * P1
    g_K = -g_x * P2
    g_d1 = _phi_cdf_adjoint(g_x * F, d1)
    g_d2 = _phi_cdf_adjoint(-g_x * K, d2)
    g_d1 = g_d1 + g_d2
    g_sigma = -g_d2 * v13
    g_T = -g_d2 * sigma * 0.5 / v13
    g_v9 = g_d1 / v11
    g_v11 = -g_d1 * d1 / v11
    g_sigma = g_sigma + g_v11 * v10
    g_T = g_T + g_v11 * sigma * 0.5 / v10
    g_T = g_T + g_v9 * v7
    g_sigma = g_sigma + g_v9 * T / 2.0 * 2 * sigma
    g_v4 = g_v9 / v4
    g_F = g_F + g_v4 / K
    g_K = g_K - g_v4 * v4 / K
    g_v1 = g_F * S * v2
    g_S = g_F * v2
    g_r = g_v1 * T
    g_T = g_T + g_v1 * r
    g_v17 = x * disc
    g_T = g_T + g_v17 * v16
    g_r = g_r - g_v17 * T
    return g_S, g_K, g_r, g_sigma, g_T


def black_scholes_jacobian_args(rng, batch=()):
    """Spot and strike near the money, rates, volatilities and maturities of a year."""
    return (rng.uniform(80.0, 120.0, batch), rng.uniform(80.0, 120.0, batch),
            rng.uniform(0.01, 0.05, batch), rng.uniform(0.1, 0.5, batch),
            rng.uniform(0.25, 2.0, batch))


# --------------------------------------------------------------------------- TransformerEncoder

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _silu(x):
    return x * _sigmoid(x)


def _softmax_rows(a):
    z = np.exp(a - np.max(a, axis=1, keepdims=True))
    return z / np.sum(z, axis=1, keepdims=True)


def _attention(q, k, v):
    a = q.T @ k
    return _softmax_rows(a) @ v


def _encoder_block(x, WQ, WK, WV, W, b, gamma, beta):
    q = WQ @ x
    k = WK @ x
    v = WV @ x
    a = x + _attention(q, k, v)
    c = _layer_norm(a, gamma, beta, axis=1)
    return _silu(W @ c + b)


def transformer_encoder(x, y, WQ1, WQ2, WK1, WK2, WV1, WV2, W1, W2, b1, b2, gamma0, beta0,
                        gamma1, beta1):
    """Two self-attention encoder blocks and a squared error (Graphax's `Encoder`,
    shapes of AlphaGrad's `make_Encoder`): a tensor task, Jacobian of the (2, 4) error
    with respect to all sixteen arguments."""
    z1 = _encoder_block(x, WQ1, WK1, WV1, W1, b1, gamma0, beta0)
    z2 = _encoder_block(z1, WQ2, WK2, WV2, W2, b2, gamma1, beta1)
    return 0.5 * (z2 - y) ** 2


ENCODER_SHAPES = [(4, 4), (2, 4)] + [(4, 4)] * 7 + [(2, 4), (4,), (2, 1), (), (), (), ()]


def transformer_encoder_args(rng, batch=()):
    return tuple(rng.standard_normal(batch + s) * 0.5 for s in ENCODER_SHAPES)


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Task:
    fun: object
    make_args: object          # (rng, batch=()) -> tuple of arrays
    published: tuple = None    # (vertices, forward, reverse, Markowitz, AlphaGrad)
    #: The published counts of a tensor task, from Graphax's own tensor graph and cost
    #: model (whole tensors as vertices): not comparable with chainrule's counts.
    graphax: tuple = None

    def args(self, rng, batch=()):
        return self.make_args(rng, batch)


TASKS = {
    "RoeFlux_1d": Task(roe_flux_1d, roe_flux_1d_args, (101, 620, 364, 407, 320)),
    "RobotArm_6DOF": Task(robot_arm_6dof, robot_arm_6dof_args, (114, 397, 301, 288, 231)),
    "HumanHeartDipole": Task(human_heart_dipole, human_heart_dipole_args,
                             (86, 240, 172, 194, 148)),
    "PropaneCombustion": Task(propane_combustion, propane_combustion_args,
                              (62, 151, 90, 111, 88)),
    "g": Task(g, g_args, (105, 632, 566, 451, 417)),
    "MLP": Task(mlp, mlp_args, graphax=(40, 10930, 392, 4796, 389)),
    "BlackScholes_Jacobian": Task(black_scholes_jacobian, black_scholes_jacobian_args,
                                  graphax=(134, 545, 572, 350, 312)),
    "TransformerEncoder": Task(transformer_encoder, transformer_encoder_args,
                               graphax=(94, 135010, 4688, 51869, 4656)),
}
