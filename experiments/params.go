package experiments

import (
	"fmt"

	"github.com/offshootdb/offshoot/vectors"
)

// The index and search parameters of a dense variant are checked against
// the ranges pgvector 0.8 accepts (vectors.MaxM and the rest) when the
// spec is validated, not found out of range by CREATE INDEX or SET after
// the corpus is embedded and loaded: the fixed values of index and
// search and every value of a sweep, each error naming its field and the
// range. An index takes only its own method's parameters (hnsw m and
// ef_construction, ivfflat lists).

// param is one value of a parameter and the field that gave it.
type param struct {
	field string
	value int
}

// pointValues are the values of a parameter that a variant's points
// take: every value of its sweep (fields "<f>.sweep.<name>[j]"), which
// overrides the fixed value, else the fixed value (field fixedField)
// when it is set.
func pointValues(f, name string, sweep []int, fixedField string, fixed int) []param {
	if len(sweep) == 0 {
		if fixed == 0 {
			return nil
		}
		return []param{{fixedField, fixed}}
	}
	out := make([]param, len(sweep))
	for j, x := range sweep {
		out[j] = param{fmt.Sprintf("%s.sweep.%s[%d]", f, name, j), x}
	}
	return out
}

// inRange checks every value of ps against lo..hi; what names the
// setting in the error.
func inRange(ps []param, lo, hi int, what string) error {
	for _, p := range ps {
		if p.value < lo || p.value > hi {
			return invalid(p.field, "%d is out of range: %s must be in %d..%d", p.value, what, lo, hi)
		}
	}
	return nil
}

// validateParams checks the index and search parameters of dense
// variant v (field f) and their sweeps.
func (v VariantSpec) validateParams(f string) error {
	ix := IndexSpec{Type: "none"}
	if v.Index != nil {
		ix = *v.Index
	}
	var s SweepSpec
	if v.Sweep != nil {
		s = *v.Sweep
	}
	m := pointValues(f, "m", s.M, f+".index.m", ix.M)
	lists := pointValues(f, "lists", s.Lists, f+".index.lists", ix.Lists)
	var efc []param // not swept
	if ix.EfConstruction != 0 {
		efc = []param{{f + ".index.ef_construction", ix.EfConstruction}}
	}
	switch ix.Type {
	case "none":
		if ix.M != 0 || ix.EfConstruction != 0 || ix.Lists != 0 {
			return invalid(f+".index", "type none (exact search) takes no m, ef_construction or lists")
		}
		if len(s.M) > 0 {
			return invalid(f+".sweep.m", "sweeps an HNSW index parameter; give index.type hnsw")
		}
		if len(s.Lists) > 0 {
			return invalid(f+".sweep.lists", "sweeps an IVFFlat index parameter; give index.type ivfflat")
		}
	case "hnsw":
		if len(lists) > 0 {
			return invalid(lists[0].field, "is an IVFFlat parameter; an hnsw index takes m and ef_construction")
		}
		if err := inRange(m, vectors.MinM, vectors.MaxM, "hnsw m"); err != nil {
			return err
		}
		if err := inRange(efc, vectors.MinEfConstruction, vectors.MaxEfConstruction, "hnsw ef_construction"); err != nil {
			return err
		}
		ef, defaulted := ix.EfConstruction, ""
		if ef == 0 {
			ef, defaulted = vectors.DefaultEfConstruction, " (the default)"
		}
		if len(m) == 0 {
			m = []param{{f + ".index.m", vectors.DefaultM}}
		}
		for _, p := range m {
			switch {
			case ef >= 2*p.value:
			case defaulted == "" && len(s.M) == 0:
				return invalid(f+".index.ef_construction", "%d is below 2·m = %d: pgvector builds hnsw with ef_construction ≥ 2·m", ef, 2*p.value)
			default:
				return invalid(p.field, "m %d needs ef_construction ≥ %d (2·m); index.ef_construction is %d%s", p.value, 2*p.value, ef, defaulted)
			}
		}
	case "ivfflat":
		if len(m) > 0 {
			return invalid(m[0].field, "is an HNSW parameter; an ivfflat index takes lists")
		}
		if len(efc) > 0 {
			return invalid(efc[0].field, "is an HNSW parameter; an ivfflat index takes lists")
		}
		if err := inRange(lists, 1, vectors.MaxLists, "ivfflat lists"); err != nil {
			return err
		}
	default:
		return invalid(f+".index.type", "must be hnsw, ivfflat or none")
	}
	if v.Search.EfSearch < 0 || v.Search.EfSearch > vectors.MaxEfSearch {
		return invalid(f+".search.ef_search", "%d is out of range: hnsw.ef_search must be in 1..%d (0: the default)", v.Search.EfSearch, vectors.MaxEfSearch)
	}
	if err := inRange(pointValues(f, "ef_search", s.EfSearch, "", 0), 1, vectors.MaxEfSearch, "hnsw.ef_search"); err != nil {
		return err
	}
	// An ivfflat point probes at most its lists; more would probe them
	// all, as that many do.
	maxProbes, what := vectors.MaxProbes, "ivfflat.probes"
	if ix.Type == "ivfflat" {
		maxProbes, what = vectors.DefaultLists, "ivfflat.probes (at most the default 100 lists)"
		for i, p := range lists {
			if i == 0 || p.value < maxProbes {
				maxProbes, what = p.value, "ivfflat.probes (at most the lists of "+p.field+")"
			}
		}
	}
	if v.Search.Probes < 0 {
		return invalid(f+".search.probes", "%d is out of range: %s must be in 1..%d (0: the default)", v.Search.Probes, what, maxProbes)
	}
	return inRange(pointValues(f, "probes", s.Probes, f+".search.probes", v.Search.Probes), 1, maxProbes, what)
}
