package evals

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestANNRecall(t *testing.T) {
	for _, c := range []struct {
		exact, approx []string
		k             int
		want          float64
	}{
		{[]string{"a", "b", "c", "d"}, []string{"a", "b", "c", "d"}, 4, 1},
		{[]string{"a", "b", "c", "d"}, []string{"d", "c", "x", "a"}, 4, 0.75}, // order inside top-k does not matter
		{[]string{"a", "b", "c", "d"}, []string{"a", "x", "b", "c"}, 2, 0.5},  // c is beyond k in approx
		{[]string{"a", "b"}, []string{"a", "a", "a"}, 3, 0.5},                 // duplicates count once; exact shorter than k
		{[]string{"a", "b"}, nil, 2, 0},
		{nil, []string{"a"}, 2, 1},
	} {
		got, err := ANNRecall(c.exact, c.approx, c.k)
		if err != nil || got != c.want {
			t.Errorf("ANNRecall(%v, %v, %d) = %v, %v; want %v", c.exact, c.approx, c.k, got, err, c.want)
		}
	}
	if _, err := ANNRecall(nil, nil, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("k=0: err = %v", err)
	}
	m, per, err := MeanANNRecall(map[string][]string{"q1": {"a", "b"}, "q2": {"c", "d"}},
		map[string][]string{"q1": {"a", "b"}, "q2": {"c", "x"}}, 2)
	if err != nil || m != 0.75 || per["q2"] != 0.5 {
		t.Fatalf("MeanANNRecall = %v %v %v", m, per, err)
	}
	if _, _, err := MeanANNRecall(map[string][]string{"q1": {"a"}}, map[string][]string{}, 2); !errors.Is(err, ErrMismatch) {
		t.Fatalf("missing query: err = %v", err)
	}
}

func TestSummarizeLatency(t *testing.T) {
	// 1..100 ms in scrambled order: nearest-rank p50 = 50ms, p95 = 95ms,
	// p99 = 99ms, mean 50.5ms; 100 queries in 2 s = 50 QPS.
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration((i*37)%100+1) * time.Millisecond
	}
	s, err := SummarizeLatency(d, 2*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := LatencyStats{Count: 100, Clients: 4, Mean: 50500 * time.Microsecond, P50: 50 * time.Millisecond,
		P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, Wall: 2 * time.Second, QPS: 50}
	if s != want {
		t.Fatalf("stats = %+v\nwant    %+v", s, want)
	}
	one, _ := SummarizeLatency([]time.Duration{3 * time.Millisecond}, time.Second, 1)
	if one.P50 != 3*time.Millisecond || one.P99 != 3*time.Millisecond {
		t.Fatalf("single sample: %+v", one)
	}
	if _, err := SummarizeLatency(nil, time.Second, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no samples: err = %v", err)
	}
}

func TestMeasureLatency(t *testing.T) {
	for _, clients := range []int{1, 4} {
		var mu sync.Mutex
		calls := map[int]int{}
		s, err := MeasureLatency(context.Background(), 200, clients, func(ctx context.Context, i int) error {
			mu.Lock()
			calls[i]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.Count != 200 || s.Clients != clients || len(calls) != 200 || s.QPS <= 0 || s.P50 > s.P99 || s.P99 > s.Max {
			t.Fatalf("clients=%d: stats %+v, %d distinct calls", clients, s, len(calls))
		}
		for i, n := range calls {
			if n != 1 {
				t.Fatalf("query %d called %d times", i, n)
			}
		}
	}
	boom := errors.New("boom")
	_, err := MeasureLatency(context.Background(), 50, 3, func(ctx context.Context, i int) error {
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := MeasureLatency(ctx, 5, 1, func(context.Context, int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
}
