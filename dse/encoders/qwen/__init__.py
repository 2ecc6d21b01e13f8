"""The Qwen-VL single-vector recipes: `dse_qwen2` (DSE), `gme_qwen2` (GME), `qwen3_vl_embedding`."""
