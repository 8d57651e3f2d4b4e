"""`comp init`: a workspace for the built-in demo competition or for an existing data set."""

from __future__ import annotations

from pathlib import Path

from comp.data.competition import Competition
from comp.data.config import CompConfig, CVConfig, DataConfig, write_config
from comp.data.demo import DemoSpec, DemoSummary, generate_demo
from comp.data.workspace import Workspace
from comp.errors import CompError

KAZANEXPRESS_JSON_KEYS = [
    "title",
    "description",
    "attributes",
    "custom_characteristics",
    "defined_characteristics",
    "filters",
]


def kazanexpress_config(with_images: bool, name: str = "demo") -> CompConfig:
    """The KazanExpress layout (docs/configuration.md); the demo writes exactly this schema."""
    return CompConfig(
        name=name,
        data=DataConfig(
            train="data/train.parquet",
            test="data/test.parquet",
            id="product_id",
            target="category_id",
            target_name="category_name",
            text_json="text_fields",
            text_json_keys=KAZANEXPRESS_JSON_KEYS,
            text=["shop_title"],
            image="data/images/{split}/{product_id}.jpg" if with_images else None,
            categorical=["shop_id"],
            numeric=["rating", "sale"],
        ),
    )


def init_demo(workspace: Workspace, spec: DemoSpec, force: bool) -> DemoSummary:
    _refuse_overwrite(workspace, force)
    summary = generate_demo(workspace.root / "data", spec)
    write_config(workspace.config_path, kazanexpress_config(spec.image_size is not None))
    _make_folders(workspace)
    return summary


def init_existing(
    workspace: Workspace,
    train: str,
    test: str,
    target: str,
    text: list[str],
    id_column: str | None,
    image: str | None,
    categorical: list[str],
    numeric: list[str],
    force: bool,
) -> Competition:
    """Write comp.toml for a CSV or parquet data set; it is validated before it is written."""
    _refuse_overwrite(workspace, force)
    config = CompConfig(
        name=Path(train).parent.resolve().name or "competition",
        data=DataConfig(
            train=_relative(workspace, train),
            test=_relative(workspace, test),
            target=target,
            id=id_column,
            text=text,
            image=None if image is None else (image if "{" in image else f"{{{image}}}"),
            categorical=categorical,
            numeric=numeric,
        ),
        cv=CVConfig(),
    )
    competition = Competition(workspace, config)
    write_config(workspace.config_path, config)
    _make_folders(workspace)
    return competition


def _refuse_overwrite(workspace: Workspace, force: bool) -> None:
    if workspace.config_path.exists() and not force:
        raise CompError(f"{workspace.config_path} exists: pass --force to replace it")
    workspace.root.mkdir(parents=True, exist_ok=True)


def _make_folders(workspace: Workspace) -> None:
    workspace.runs.mkdir(parents=True, exist_ok=True)
    workspace.submissions.mkdir(parents=True, exist_ok=True)


def _relative(workspace: Workspace, path: str) -> str:
    """Store paths inside the workspace relative to it, so the workspace can move."""
    resolved = Path(path).resolve()
    if not resolved.exists():
        raise CompError(f"the data file {path} does not exist")
    try:
        return str(resolved.relative_to(workspace.root))
    except ValueError:
        return str(resolved)
