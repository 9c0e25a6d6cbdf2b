// Package evals measures retrieval: BEIR datasets, trec_eval-exact metrics
// (P@k, recall@k, MRR@k, nDCG@k, MAP@k, hit@k), ANN recall against exact
// search, latency percentiles, and paired significance tests.
package evals
