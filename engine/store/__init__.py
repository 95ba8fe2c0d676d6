"""The Zarr v3 store: layout and writer, shard codec, JPEG, inspection.

``zarr_store`` owns the layout, the writer and ``info``; ``shard_codec``
encodes and reads shards directly; ``jpeg`` encodes images; ``preview``
draws contact sheets. Learning reads stores through this package only.
"""
