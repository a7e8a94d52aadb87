/*
 * fsce_formulas.h -- the scalar formulas of one row, written once.
 *
 * Both the row-by-row kernels (Cython, src/fastsce/_kernels_loss.pxi) and the
 * lane-per-row kernel of short rows (small_rows, fsce_rows_impl.h) finish a
 * row with these, so the two paths cannot drift apart.  For a row of
 * (transformed) logits z with max m and exp sum S = sum_j exp(z_j - m):
 *   log_total = log S, lse = m + log_total,
 *   b = w_t (1 - eps) onehot(t) + eps / C (a class index t, weight w_t,
 *   label smoothing eps), and mean_gap = m - mean_j z_j.
 */
#ifndef FSCE_FORMULAS_H
#define FSCE_FORMULAS_H

#include <math.h>

#include "fsce_rows.h"

/* lse = m + log S, or m itself when m = +-inf (no inf - inf; +inf: the loss is NaN) */
static inline double fsce_lse(double m, double log_total)
{
    return isinf(m) ? m : m + log_total;
}

/* log S from S = total and, for a confident row (total < FSCE_CONFIDENT_TOTAL),
   S' = other = S - 1 summed without the max's own term: log1p keeps its digits */
static inline double fsce_log_total(double total, double other)
{
    return total < FSCE_CONFIDENT_TOTAL ? log1p(other) : log(total);
}

/* coefficient * term, exactly 0 when the coefficient is 0, even for an infinite term
   (a target of weight 0 on a masked class contributes nothing) */
static inline double fsce_weighted(double coefficient, double term)
{
    return coefficient != 0.0 ? coefficient * term : 0.0;
}

/* the loss of a class-index target without the z-loss:
   sum_j b_j (lse - z_j) = w_t (1 - eps) ((m - z_t) + log S) + eps (m - mean_j z_j + log S) */
static inline double fsce_hard_target_loss(double target_mass, double eps, double m, double z_t,
                                           double log_total, double mean_gap)
{
    return fsce_weighted(target_mass, (m - z_t) + log_total) + fsce_weighted(eps, mean_gap + log_total);
}

/* the gradient at the target of a confident row whose target is the max (s_t = 1 / S,
   S = 1 + S'): scale (A s_t - w_t (1 - eps) - eps / C) with A = w_t (1 - eps) + eps +
   z_loss_term, written as scale ((eps + z_loss_term - w_t (1 - eps) S') / S - eps / C)
   so that s_t - 1 = -S' / S does not cancel */
static inline double fsce_confident_target_grad(double scale, double target_mass, double eps,
                                                double z_loss_term, double other, double total,
                                                double n_classes)
{
    return scale * ((eps + z_loss_term - target_mass * other) / total - eps / n_classes);
}

#endif /* FSCE_FORMULAS_H */
