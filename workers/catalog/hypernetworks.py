"""Which Graph HyperNetworks a predict job can use, by name.

The web tier lists them (form, API, validation) and the worker opens the same file, so both
call :func:`hypernetwork_files` with the same two settings (``GHN_OURS_PATH`` and
``GHN_CHECKPOINT_DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OURS = "ours"
OURS_DESCRIPTION = (
    "Weightspace's own GHN-3, meta-trained on Fashion-MNIST (28 x 28 grey images, 10 classes) "
    "with DeepNets-style architectures"
)


@dataclass(frozen=True)
class Measurement:
    """One accuracy a GHN's prediction reached with no training, next to default init."""

    architectures: str  # what was predicted, e.g. "10 held-out DeepNets test@small nets"
    accuracy: float  # top-1, 0..1, predicted parameters (BatchNorm statistics calibrated)
    random: float | None  # the same architectures at PyTorch's default init; None: not given
    where: str  # where it was measured or published

    @property
    def accuracy_label(self) -> str:
        return f"{self.accuracy:.1%}"

    @property
    def random_label(self) -> str:
        return "—" if self.random is None else f"{self.random:.1%}"


@dataclass(frozen=True)
class Domain:
    """What a GHN was meta-trained for: predictions outside it are rarely better than random.

    ``input_shape`` is one image's (channels, height, width); ``families`` says which designs
    it saw; ``measured`` holds the accuracies behind any claim the pages make.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    data: str
    families: str
    measured: tuple[Measurement, ...]
    # Accuracy of BatchNorm-free networks, which the GHN saw few of (None: not measured).
    bn_free: Measurement | None = None

    @property
    def shape_label(self) -> str:
        return "×".join(str(d) for d in self.input_shape)


_BENCH = "bench/ghn.py on this project, 1,000 Fashion-MNIST test images (bench/README.md)"
_PAPER = "published: Knyazev et al., ICML 2023 (GHN-3), ImageNet validation set"
_IMAGENET = Domain(
    input_shape=(3, 224, 224),
    num_classes=1000,
    data="ImageNet",
    families="DeepNets-1M cell networks and torchvision-style ImageNet classifiers",
    measured=(
        Measurement("ResNet-50 predicted by GHN-3-XL (ghn3xlm16)", 0.200, None, _PAPER),
    ),
)

DOMAINS: dict[str, Domain] = {
    OURS: Domain(
        input_shape=(1, 28, 28),
        num_classes=10,
        data="Fashion-MNIST",
        families="DeepNets-1M-style cell networks with BatchNorm (C = 8–16, 4–8 cells)",
        measured=(
            Measurement("10 held-out DeepNets test@small nets (mean)", 0.581, 0.102, _BENCH),
            Measurement("torchvision resnet18 (1-channel stem, 10 classes)", 0.110, 0.116, _BENCH),
            Measurement("the zoo's FM/16 cnn (no BatchNorm)", 0.076, 0.096, _BENCH),
        ),
        bn_free=Measurement("10 BatchNorm-free test@small nets (mean)", 0.142, 0.098, _BENCH),
    ),
    # The official GHN-3 releases, under the file names workers.ghn.convert suggests.
    **{name: _IMAGENET for name in ("ghn3tm8", "ghn3sm8", "ghn3lm8", "ghn3xlm16")},
}


def get_domain(name: str) -> Domain | None:
    """The domain of the GHN called ``name``; None for a file whose training is unknown."""
    return DOMAINS.get(name)


def hypernetwork_files(ours_path: str | Path | None, folder: str | Path) -> dict[str, Path]:
    """The usable GHN files by name: ``ours`` (the project's own, when its file is there)
    first, then the converted files in ``folder`` by file name (an installed ``ours.pt``
    takes the name's place)."""
    files: dict[str, Path] = {}
    if ours_path and Path(ours_path).is_file():
        files[OURS] = Path(ours_path)
    directory = Path(folder)
    if directory.is_dir():
        files.update((p.stem, p) for p in sorted(directory.glob("*.pt")))
    return files


def describe(name: str, path: Path) -> str:
    """One line about a GHN, for the API and the predict form."""
    if name == OURS:
        return OURS_DESCRIPTION
    domain = get_domain(name)
    if domain is not None:
        return (
            f"GHN-3 {name}, meta-trained on {domain.data} ({domain.shape_label} images, "
            f"{domain.num_classes:,} classes); installed file {path.name}"
        )
    return f"installed file {path.name}"
