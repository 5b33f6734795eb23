"""Drift statistics on frozen reference bins (pure numpy, no I/O).

Modules:

- `bins`: right-closed frozen bins (-inf, e_0], (e_0, e_1], ..., (e_last, inf); mergeable
  per-window `Histogram`s (NaN counted apart) and categorical counts with an unseen bucket.
- `divergence`: PSI, KL and Jensen-Shannon on counts or shares, scalar and per-row
  (features x bins) forms, and the PSI thresholds (0.1 moderate, 0.2 major).
- `ks`: exact two-sample Kolmogorov-Smirnov D against a sorted reference, from the samples or
  from per-reference-point counts, and its asymptotic p-value.
- `chi2`: chi-square goodness-of-fit of category counts against reference shares.
- `effect`: effect sizes (KS D of a normal mean shift, total variation distance) and
  minimum-effect tests (H0: the distance is at most a negligible margin), whose power
  against a negligible difference does not grow with the window.
- `multiple`: Benjamini-Hochberg correction across features.
- `cusum`: online CUSUM over many standardised streams (two-sided; one-sided on Bernoulli
  log-likelihood ratios for shares), batch-vectorised, with
  its threshold set from a false-alarm budget.
- `paired`: two models on the same rows (champion/challenger, shadow): exact McNemar,
  Wilcoxon signed-rank and paired bootstrap; a positive effect means model b is better.
- `experiments`: two independent groups (A/B variants): difference of proportions
  (Newcombe interval), cluster-robust difference of means (delta method) and sample sizes;
  normal CDF and quantile without scipy.
- `sequential`: always-valid p-values and confidence sequences (mSPRT) for continuously
  monitored A/B tests and canaries, and the fixed-horizon n to compare with.

Smoothing: divergences and the chi-square expectation use shares smoothed as
(p + eps) / (1 + eps * k) for k bins (eps = 1e-4), which keeps empty bins finite while each
vector still sums to 1.
"""

from driftloop.stats._types import Counts, Flags, Floats
from driftloop.stats.bins import Histogram, bin_counts, bin_index, category_counts, check_edges
from driftloop.stats.chi2 import Chi2Result, chi2_sf, chi2_test, gamma_q
from driftloop.stats.cusum import Alarm, CusumBank, threshold_for
from driftloop.stats.divergence import (
    EPS,
    PSI_MAJOR,
    PSI_MODERATE,
    js_distance,
    js_distance_rows,
    js_divergence,
    js_divergence_rows,
    kl,
    kl_rows,
    output_distance,
    psi,
    psi_rows,
    smooth,
    to_shares,
)
from driftloop.stats.effect import (
    chi2_margin_test,
    ks_margin_p_value,
    normal_shift_ks,
    total_variation,
)
from driftloop.stats.experiments import (
    GroupDifference,
    clustered_difference,
    normal_cdf,
    normal_quantile,
    proportion_difference,
    required_sample_size,
    wilson_interval,
)
from driftloop.stats.ks import (
    kolmogorov_sf,
    ks_counts,
    ks_from_counts,
    ks_p_value,
    ks_statistic,
)
from driftloop.stats.multiple import benjamini_hochberg
from driftloop.stats.paired import (
    PairedResult,
    beta_regularized,
    mcnemar,
    paired_bootstrap,
    t_quantile,
    wilcoxon_signed_rank,
)
from driftloop.stats.sequential import (
    SequentialState,
    SequentialTest,
    fixed_horizon_n,
    msprt_interval,
    msprt_log_ratio,
    msprt_p_value,
)

__all__ = [
    "EPS",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "Alarm",
    "Chi2Result",
    "Counts",
    "CusumBank",
    "Flags",
    "Floats",
    "GroupDifference",
    "Histogram",
    "PairedResult",
    "SequentialState",
    "SequentialTest",
    "benjamini_hochberg",
    "beta_regularized",
    "bin_counts",
    "bin_index",
    "category_counts",
    "check_edges",
    "chi2_margin_test",
    "chi2_sf",
    "chi2_test",
    "clustered_difference",
    "fixed_horizon_n",
    "gamma_q",
    "js_distance",
    "js_distance_rows",
    "js_divergence",
    "js_divergence_rows",
    "kl",
    "kl_rows",
    "kolmogorov_sf",
    "ks_counts",
    "ks_from_counts",
    "ks_margin_p_value",
    "ks_p_value",
    "ks_statistic",
    "mcnemar",
    "msprt_interval",
    "msprt_log_ratio",
    "msprt_p_value",
    "normal_cdf",
    "normal_quantile",
    "normal_shift_ks",
    "output_distance",
    "paired_bootstrap",
    "proportion_difference",
    "psi",
    "psi_rows",
    "required_sample_size",
    "smooth",
    "t_quantile",
    "threshold_for",
    "to_shares",
    "total_variation",
    "wilcoxon_signed_rank",
    "wilson_interval",
]
