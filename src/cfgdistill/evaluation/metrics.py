"""Sample-quality metrics in a classifier's feature space: FD, conditional accuracy, diversity, precision/recall."""

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from .classifier import Features, predict

# Accuracies are float32 means: 492/500 − 487/500 is 0.01000005 there, yet exactly the 1-point gate. One sample
# in a million is still far above this.
ACCURACY_TOLERANCE = 1e-6


@torch.no_grad()
def embed(classifier, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    classifier.eval()
    return torch.cat([classifier.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


class FrechetDistance:
    """FD to a fixed real set, through torchmetrics with the classifier's penultimate layer as features."""

    def __init__(self, classifier, real: torch.Tensor):
        self.metric = FrechetInceptionDistance(feature=Features(classifier), normalize=True, reset_real_features=False)
        self.metric.update(real, real=True)

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor) -> float:
        self.metric.reset()  # keeps the real statistics
        self.metric.update(fake, real=False)
        return float(self.metric.compute())


def accuracy(classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """How often the classifier agrees with the requested class."""
    return (predict(classifier, images) == labels).float().mean().item()


def per_class_accuracy(hits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list:
    """Accuracy within each requested class; a class with no samples gets None (valid JSON, unlike NaN)."""
    hits, counts = hits.float(), torch.bincount(labels, minlength=num_classes).float()
    rates = torch.bincount(labels, weights=hits, minlength=num_classes) / counts
    return [rate if count else None for rate, count in zip(rates.tolist(), counts.tolist())]


def paired_gap_se(hits_a: torch.Tensor, hits_b: torch.Tensor) -> float:
    """Standard error of mean(hits_a) − mean(hits_b) when both models are scored on the same noise and labels."""
    d = hits_a.float() - hits_b.float()
    return (d.std() / len(d) ** 0.5).item()


def within_class_distance(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise feature distance inside each requested class, averaged over classes: falls as diversity falls."""
    means = []
    for c in labels.unique():
        f = features[labels == c]
        if len(f) > 1:
            d = torch.cdist(f, f)
            means.append(d.sum() / (len(f) * (len(f) - 1)))
    return float(torch.stack(means).mean())


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    return torch.cdist(features, features).kthvalue(k + 1, dim=1).values


def coverage(manifold: torch.Tensor, queries: torch.Tensor, k: int) -> float:
    """Fraction of queries inside the union of k-NN balls around the manifold's points."""
    radii = knn_radii(manifold, k)
    inside = torch.cdist(queries, manifold) <= radii.unsqueeze(0)
    return inside.any(dim=1).float().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple:
    """Improved precision and recall, Kynkäänniemi et al. (2019): fidelity and coverage in feature space."""
    return coverage(real, fake, k), coverage(fake, real, k)


def saturation(images: torch.Tensor) -> float:
    """The share of pixels within 2% of the range's ends (|x| > 0.96 in [−1, 1]): where high guidance piles
    them up, as oversaturation."""
    return (images.abs() > 0.96).float().mean().item()
