"""The filesystem layer on local paths and file URIs (object stores go through the same
pyarrow calls)."""

from __future__ import annotations

from pathlib import Path

from lakehouse.io.storage import is_dir, join, move, remove_tree, sub_dirs


def test_checkpoints_tables_and_moves(tmp_path: Path) -> None:
    for root in (str(tmp_path), f"file://{tmp_path}"):
        checkpoint = join(root, "_checkpoints", "silver.orders")
        assert not is_dir(checkpoint)
        (tmp_path / "_checkpoints" / "silver.orders" / "offsets").mkdir(parents=True,
                                                                          exist_ok=True)
        assert is_dir(checkpoint)
        assert sub_dirs(join(root, "_checkpoints")) == ["silver.orders"]
        assert sub_dirs(join(root, "missing")) == []
        move(checkpoint, join(root, "_checkpoints", "silver.orders.old"))
        assert not is_dir(checkpoint)
        remove_tree(join(root, "_checkpoints"))
        remove_tree(join(root, "_checkpoints"))  # absent: nothing to do
        assert not is_dir(join(root, "_checkpoints"))


def test_join_keeps_uris() -> None:
    assert join("s3a://bucket/shop/", "silver", "/orders") == "s3a://bucket/shop/silver/orders"
