"""Data: numpy-only readers and batching; nothing here imports JAX models or tasks.

Readers yield plain dicts of numpy arrays (`{'inputs', 'lengths', ...}`):

files.py            .npz / .jsonl sequences (the generic tasks' files)
batching.py         epoch orders, batches, length and width buckets
buckets.py          bucket boundaries of least padding
synthetic.py        the generated regression tasks ('seed_noise', 'bidir_window')
text.py, vocab.py, tag_schemes.py, word_vectors.py
                    CoNLL-U, CoNLL and TSV text, vocabularies, BIO/BIOES, word vectors
wav.py, audio.py, feature_cache.py, fsdd.py
                    wav files, log-mel / MFCC features, their cache, spoken digits
csv_series.py, timeseries.py, ts_baselines.py
                    CSV series, ETT splits, windows and scaling, forecast baselines
"""
