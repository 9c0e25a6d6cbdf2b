package evals

import "hash/maphash"

// IDSet finds an id that occurs twice in a stream of ids without keeping
// the ids: it holds a 128-bit keyed hash of each (some 40 bytes an id),
// so a scan that holds one document at a time can still refuse a
// repeated one. Two different ids are mistaken for one with probability
// about n²/2¹²⁹ for n ids (below 10⁻²⁰ for a billion). Create it with
// NewIDSet; not safe for concurrent use.
type IDSet struct {
	seeds [2]maphash.Seed
	first map[[2]uint64]int
}

// NewIDSet returns an empty set.
func NewIDSet() *IDSet {
	return &IDSet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, first: map[[2]uint64]int{}}
}

// Add records id as seen at place (a line or row number). When id was
// added before it records nothing and returns the place it was first
// seen at and true.
func (s *IDSet) Add(id string, place int) (first int, seen bool) {
	k := [2]uint64{maphash.String(s.seeds[0], id), maphash.String(s.seeds[1], id)}
	if p, ok := s.first[k]; ok {
		return p, true
	}
	s.first[k] = place
	return 0, false
}
