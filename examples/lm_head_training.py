"""Train a tiny next-token model in plain NumPy; fastsce fuses the LM head and the loss.

The text is generated here: a Markov chain over V tokens in which every token is followed
by one of `successors` tokens of its own, with random probabilities, so that the best
possible loss is known (the chain's conditional entropy, printed at the end).  The model
is an embedding and a language-model head,

    h = E[previous token]              (D,)   the embedding of the token before
    z = h Wᵀ + b                       (V,)   logits, never held for the whole batch
    L = CE(z, next token)                     batch mean

trained with Adam.  fastsce.linear_cross_entropy_with_grad computes L and its gradients
with respect to h, W and b in one call, chunk by chunk, without the (batch, V) logits;
the embedding's gradient is the rows of dL/dh added to the rows of E they came from:

    dL/dh, dL/dW, dL/db = fastsce.linear_cross_entropy_with_grad(h, W, next, linear_bias=b)
    dL/dE[t] = sum of dL/dh over the positions whose previous token is t

    python examples/lm_head_training.py [--epochs 8] [--vocab 512] [--dim 32] [--quiet]
"""

import argparse
import sys

import numpy as np

import fastsce


def make_chain(vocab, successors, rng):
    """(next tokens (V, k), their probabilities (V, k), conditional entropy in nats)."""
    following = np.stack([rng.choice(vocab, successors, replace=False) for _ in range(vocab)])
    probabilities = rng.dirichlet(np.ones(successors), size=vocab)
    # the stationary distribution of the chain weighs each token's entropy
    transition = np.zeros((vocab, vocab))
    np.put_along_axis(transition, following, probabilities, axis=1)
    stationary = np.full(vocab, 1.0 / vocab)
    for _ in range(200):
        stationary = stationary @ transition
    row_entropy = -np.sum(probabilities * np.log(probabilities), axis=1)
    return following, probabilities, float(stationary @ row_entropy)


def make_text(following, probabilities, length, rng):
    tokens = np.empty(length, np.int64)
    tokens[0] = rng.integers(len(following))
    draws = rng.random(length)
    cumulative = np.cumsum(probabilities, axis=1)
    for i in range(1, length):
        previous = tokens[i - 1]
        choice = min(np.searchsorted(cumulative[previous], draws[i]), following.shape[1] - 1)
        tokens[i] = following[previous, choice]
    return tokens


class Adam:
    """Adam on a dict of float32 arrays, updated in place."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.steps = 0

    def step(self, grads):
        self.steps += 1
        correction1 = 1 - self.beta1**self.steps
        correction2 = 1 - self.beta2**self.steps
        for name, grad in grads.items():
            m, v = self.m[name], self.v[name]
            m += (1 - self.beta1) * (grad - m)
            v += (1 - self.beta2) * (grad * grad - v)
            step = self.lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)
            self.params[name] -= step.astype(np.float32)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="passes over the text")
    parser.add_argument("--vocab", type=int, default=512, help="tokens in the vocabulary")
    parser.add_argument("--dim", type=int, default=32, help="embedding dimension")
    parser.add_argument("--successors", type=int, default=4, help="tokens that may follow one")
    parser.add_argument("--length", type=int, default=40000, help="tokens of text")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.02, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of text and initialisation")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    if min(args.epochs, args.vocab, args.dim, args.successors, args.batch_size) < 1:
        parser.error("--epochs, --vocab, --dim, --successors and --batch-size must be >= 1")
    if args.length < 2 or args.successors > args.vocab:
        parser.error("--length must be >= 2 and --successors at most --vocab")
    return args


def main(argv=None):
    """Train; returns the per-epoch mean losses and the chain's entropy (the best loss)."""
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    following, probabilities, entropy = make_chain(args.vocab, args.successors, rng)
    text = make_text(following, probabilities, args.length, rng)
    previous, following_token = text[:-1], text[1:]
    params = {
        "E": (0.1 * rng.standard_normal((args.vocab, args.dim))).astype(np.float32),
        "W": (rng.standard_normal((args.vocab, args.dim)) / np.sqrt(args.dim)).astype(np.float32),
        "b": np.zeros(args.vocab, np.float32),
    }
    optimizer = Adam(params, args.lr)
    epoch_losses = []
    for epoch in range(args.epochs):
        order = rng.permutation(len(previous))
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            h = params["E"][previous[batch]]
            loss, grad_h, grad_w, grad_b = fastsce.linear_cross_entropy_with_grad(
                h, params["W"], following_token[batch], linear_bias=params["b"]
            )
            grad_e = np.zeros_like(params["E"])
            np.add.at(grad_e, previous[batch], grad_h)
            optimizer.step({"E": grad_e, "W": grad_w, "b": grad_b})
            total += loss * len(batch)
        epoch_losses.append(total / len(order))
        if not args.quiet:
            print(f"epoch {epoch + 1:3d}  loss {epoch_losses[-1]:.4f}")
    if not args.quiet:
        print(
            f"final loss {epoch_losses[-1]:.4f}, best possible {entropy:.4f} (the chain's entropy)"
        )
    return {"epoch_losses": epoch_losses, "entropy": entropy}


if __name__ == "__main__":
    main(sys.argv[1:])
