// Package evals measures retrieval: BEIR datasets, trec_eval-exact metrics
// (P@k, recall@k, MRR@k, nDCG@k, MAP@k, hit@k), ANN recall against exact
// search, latency percentiles, and paired significance tests.
//
// # Data
//
// A Dataset is a corpus, queries and Qrels (query → document → grade) read
// from the BEIR layout by LoadBEIR, which validates every line and reports
// problems as a *LineError naming file and line. ReadQrels reads TREC
// ("qid iter docno rel") or BEIR tsv qrels, telling them apart by the
// number of fields; ReadRun reads TREC run files ("qid Q0 docno rank score
// tag"). Synthetic generates seeded datasets of any size for scale tests.
//
// # Measures
//
// Evaluate reproduces trec_eval (the current NIST release, whose scores
// are doubles): documents are ranked by score descending with ties broken
// by docno descending (the rank column is ignored); a document is relevant
// when its grade is at least the relevance level (default 1); judged
// non-relevant, negative and unjudged documents are non-relevant. Measures
// are named as trec_eval prints them: P_k divides by k even when fewer are
// retrieved; recall_k, map and map_cut_k divide by all judged relevant
// documents; success_k is hit@k; recip_rank and recip_rank_cut_k are MRR;
// ndcg and ndcg_cut_k use the grades as linear gains with a log2(rank+1)
// discount and an ideal ranking cut at the same k. ndcg_exp_cut_k is the
// exponential-gain (2^grade - 1) variant, which trec_eval does not have.
// Rprec, bpref, iprec_at_recall_0.00..1.00, infAP and gm_map follow
// m_Rprec.c, m_bpref.c (judged non-relevant documents only, min(R, N)),
// m_iprec_at_recall.c (lround cutoffs), m_infap.c (a negative grade marks
// a pooled but unjudged document) and m_gm_map.c (geometric mean with
// per-query AP floored at 0.00001; only the all value is printed).
// Averages run over the queries that have both judgments and results, or
// over all judged queries with Options.Complete (trec_eval -c).
// Options.MaxResults and Options.JudgedOnly are trec_eval's -M and -J.
//
// Stricter than trec_eval: unparsable scores and relevance values are
// errors rather than silently read as 0.
//
// # Comparisons
//
// RandomizationTest (paired, two-sided, sign-flip), BootstrapCI (percentile
// interval of the mean difference) and WinTieLoss underlie Compare, which
// reports per measure the delta, interval, p-value and significance, and
// lists queries worst first. All randomness is seeded: the same inputs and
// seed give the same numbers on every machine.
//
// All functions are safe for concurrent use; values returned are owned by
// the caller.
package evals
