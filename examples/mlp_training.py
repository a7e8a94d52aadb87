"""Train a 2-layer MLP in plain NumPy, with fastsce for the loss and its gradient.

The data are K interleaved spiral arms in 2-D (one class per arm, generated
here, no download), split into train and test sets.  The model is

    a = x W1 + b1,   h = relu(a),   z = h W2 + b2,   L = CE(z, y)  (label-smoothed, batch mean)

trained with minibatch SGD with momentum.  fastsce.CrossEntropyLoss computes L,
dL/dz and the argmax of every row of z in one pass over the logits, writing
dL/dz into a buffer reused for every batch; the rest of the backward pass is
done by hand, one line of maths per step (m rows in the batch, K classes,
y_smooth = (1 - eps) onehot(y) + eps / K with eps the label smoothing):

    dL/dz  = (softmax(z) - y_smooth) / m     fastsce: loss_and_grad(z, y, out=G)
    dL/dW2 = h^T dL/dz                       each weight: its input times the output error
    dL/db2 = sum over rows of dL/dz          the bias is added to every row
    dL/dh  = dL/dz W2^T                      the error sent back through W2
    dL/da  = dL/dh * [a > 0]                 relu passes the gradient where it was active
    dL/dW1 = x^T dL/da                       as for W2, with the input x
    dL/db1 = sum over rows of dL/da          as for b2

Per-epoch loss and running train accuracy are printed; the final train and
test accuracies come from the argmax_out of a loss pass over each split.

    python examples/mlp_training.py [--epochs 40] [--hidden 64] [--seed 0] [--quiet]
"""

import argparse
import sys
import time

import numpy as np

import fastsce


def make_spirals(n_per_class, n_classes, noise, rng):
    """(x, y): n_per_class points on each of n_classes spiral arms in 2-D."""
    radius = np.tile(np.linspace(0.05, 1.0, n_per_class), n_classes)
    arm = np.repeat(np.arange(n_classes), n_per_class)
    angle = 2.5 * radius * np.pi + 2 * np.pi * arm / n_classes
    angle = angle + noise * rng.standard_normal(angle.shape)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x, arm.astype(np.int64)


def split(x, y, test_fraction, rng):
    order = rng.permutation(len(x))
    n_test = round(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def init_params(n_in, n_hidden, n_out, rng, dtype):
    """He initialisation for the relu layer, small weights for the output layer."""
    return {
        "W1": (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)).astype(dtype),
        "b1": np.zeros(n_hidden, dtype),
        "W2": (rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)).astype(dtype),
        "b2": np.zeros(n_out, dtype),
    }


def forward(params, x):
    """(a, h, z): pre-activation, hidden activation and logits."""
    a = x @ params["W1"] + params["b1"]
    h = np.maximum(a, 0)
    z = h @ params["W2"] + params["b2"]
    return a, h, z


def evaluate(criterion, params, x, y):
    """(loss, accuracy) of one split: one fastsce pass gives both (argmax_out)."""
    _, _, z = forward(params, x)
    predicted = np.empty(len(x), np.int64)
    loss = criterion(z, y, argmax_out=predicted)
    return float(loss), float(np.mean(predicted == y))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="passes over the train set")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.add_argument("--classes", type=int, default=3, help="spiral arms (classes)")
    parser.add_argument("--points", type=int, default=400, help="points per class")
    parser.add_argument("--noise", type=float, default=0.15, help="angular noise of the spirals")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    args = parser.parse_args(argv)
    for name in ("epochs", "hidden", "classes", "points", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    """Train and return the results as a dict (also printed unless --quiet)."""
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    rng = np.random.default_rng(args.seed)
    dtype = np.float32
    x, y = make_spirals(args.points, args.classes, args.noise, rng)
    x_train, y_train, x_test, y_test = split(x.astype(dtype), y, 0.25, rng)
    params = init_params(2, args.hidden, args.classes, rng, dtype)
    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    criterion = fastsce.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    # buffers reused by every batch: the loss gradient and the predicted classes;
    # a shorter last batch uses their leading rows (still C-contiguous)
    grad_z = np.empty((args.batch_size, args.classes), dtype)
    predicted = np.empty(args.batch_size, np.int64)

    losses, train_accuracies = [], []
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        total_loss = 0.0
        correct = 0
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            xb, yb = x_train[batch], y_train[batch]
            m = len(batch)
            a, h, z = forward(params, xb)
            # one pass: batch-mean loss, dL/dz into grad_z, argmax of each row into predicted
            loss, g = criterion.loss_and_grad(z, yb, out=grad_z[:m], argmax_out=predicted[:m])
            total_loss += float(loss) * m
            correct += int(np.count_nonzero(predicted[:m] == yb))
            grads = {
                "W2": h.T @ g,
                "b2": g.sum(axis=0),
            }
            g_a = (g @ params["W2"].T) * (a > 0)
            grads["W1"] = xb.T @ g_a
            grads["b1"] = g_a.sum(axis=0)
            for name, value in params.items():
                velocity[name] *= args.momentum
                velocity[name] -= args.lr * grads[name]
                value += velocity[name]
        losses.append(total_loss / len(x_train))
        train_accuracies.append(correct / len(x_train))
        say(f"epoch {epoch:3d}  loss {losses[-1]:.4f}  train accuracy {train_accuracies[-1]:.3f}")

    train_loss, train_accuracy = evaluate(criterion, params, x_train, y_train)
    test_loss, test_accuracy = evaluate(criterion, params, x_test, y_test)
    seconds = time.perf_counter() - started
    say(
        f"final: train loss {train_loss:.4f}, train accuracy {train_accuracy:.3f}; "
        f"test loss {test_loss:.4f}, test accuracy {test_accuracy:.3f} "
        f"({len(x_train)} train / {len(x_test)} test points, {seconds:.2f} s)"
    )
    return {
        "epoch_losses": losses,
        "epoch_train_accuracies": train_accuracies,
        "final_loss": losses[-1],
        "train_loss": train_loss,
        "test_loss": test_loss,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "seconds": seconds,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
