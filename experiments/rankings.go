package experiments

import (
	"fmt"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
)

// Per-query rankings live beside the run record, one record per query
// under runres/<run>/<variant>\x00<query>, in query byte order. A variant
// writes them in batches as its queries are answered (and again with
// their measures and timed latency once it has them), so a run's memory
// does not hold every ranking of every variant, progress updates rewrite
// a small record, and an interrupted or failed variant keeps the rankings
// it produced. GetRun assembles them into VariantRun.Results; records
// written before rankings moved out keep theirs inline.

// resultBatch is how many rankings one synced write holds.
var resultBatch = 256

// rankingsFlushed, when set (by tests), is called after each batch a
// resultWriter stores, with the number it has stored so far.
var rankingsFlushed func(run, variant string, stored int)

func resultPrefix(run, variant string) (lower, upper []byte) {
	p := "runres/" + run + "/" + variant
	return []byte(p + "\x00"), []byte(p + "\x01")
}

func resultKey(run, variant, query string) []byte {
	lower, _ := resultPrefix(run, variant)
	return append(lower, query...)
}

// resultWriter stores one variant's rankings as they are produced.
type resultWriter struct {
	s            *Service
	run, variant string
	buf          []controldb.KV
	stored       int
}

func (s *Service) newResultWriter(run, variant string) *resultWriter {
	return &resultWriter{s: s, run: run, variant: variant}
}

// add queues qr and writes the queue once it holds a batch.
func (w *resultWriter) add(qr QueryRanking) error {
	w.buf = append(w.buf, controldb.KV{Key: resultKey(w.run, w.variant, qr.Query), Value: qr})
	if len(w.buf) >= resultBatch {
		return w.flush()
	}
	return nil
}

// flush writes what is queued.
func (w *resultWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.s.withDB(func(db *controldb.DB) error { return db.PutAll(w.buf) })
	n := len(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		return fmt.Errorf("record rankings: %w", err)
	}
	w.stored += n
	if rankingsFlushed != nil {
		rankingsFlushed(w.run, w.variant, w.stored)
	}
	return nil
}

// storeResults writes rs as the rankings of one variant.
func (s *Service) storeResults(run, variant string, rs []QueryRanking) error {
	w := s.newResultWriter(run, variant)
	for _, qr := range rs {
		if err := w.add(qr); err != nil {
			return err
		}
	}
	return w.flush()
}

// updateResults rewrites every stored ranking of a variant through fn,
// a batch at a time.
func (s *Service) updateResults(run, variant string, fn func(*QueryRanking)) error {
	lower, upper := resultPrefix(run, variant)
	return s.withDB(func(db *controldb.DB) error {
		var buf []controldb.KV
		err := db.Scan(lower, upper, func(k, v []byte) (bool, error) {
			var qr QueryRanking
			if err := decodeJSON(v, &qr); err != nil {
				return false, err
			}
			fn(&qr)
			buf = append(buf, controldb.KV{Key: append([]byte(nil), k...), Value: qr})
			if len(buf) < resultBatch {
				return true, nil
			}
			err := db.PutAll(buf)
			buf = buf[:0]
			return err == nil, err
		})
		if err != nil {
			return fmt.Errorf("record rankings: %w", err)
		}
		return db.PutAll(buf)
	})
}

// loadResults reads a variant's stored rankings, in query order.
func (s *Service) loadResults(run, variant string) ([]QueryRanking, error) {
	lower, upper := resultPrefix(run, variant)
	var out []QueryRanking
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan(lower, upper, func(_, v []byte) (bool, error) {
			var qr QueryRanking
			if err := decodeJSON(v, &qr); err != nil {
				return false, err
			}
			out = append(out, qr)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read rankings of %s:%s: %w", run, variant, err)
	}
	return out, nil
}

// withResults fills in the rankings of r's variants that are stored
// beside the record.
func (s *Service) withResults(r *Run) error {
	for i := range r.Variants {
		v := &r.Variants[i]
		if len(v.Results) > 0 {
			continue // recorded inline by an older server
		}
		rs, err := s.loadResults(r.ID, v.Name)
		if err != nil {
			return err
		}
		v.Results = rs
	}
	return nil
}
