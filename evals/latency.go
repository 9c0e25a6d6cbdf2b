package evals

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyStats summarises per-query latencies of one load run.
type LatencyStats struct {
	// Count is the number of queries measured.
	Count int `json:"count"`
	// Clients is the number of concurrent clients that issued them.
	Clients int `json:"clients"`
	// Mean, P50, P95, P99 and Max are per-query latencies. Percentiles
	// use the nearest-rank method: the smallest latency with at least p%
	// of all latencies at or below it.
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P95  time.Duration `json:"p95_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	// Wall is the elapsed time of the whole run.
	Wall time.Duration `json:"wall_ns"`
	// QPS is Count / Wall in queries per second.
	QPS float64 `json:"qps"`
}

// String formats the stats for people.
func (s LatencyStats) String() string {
	return fmt.Sprintf("n=%d clients=%d mean=%v p50=%v p95=%v p99=%v max=%v qps=%.1f",
		s.Count, s.Clients, s.Mean, s.P50, s.P95, s.P99, s.Max, s.QPS)
}

// SummarizeLatency computes LatencyStats from per-query durations, the wall
// time they took and the number of clients that issued them. It needs at
// least one duration, a positive wall time and clients >= 1.
func SummarizeLatency(durations []time.Duration, wall time.Duration, clients int) (LatencyStats, error) {
	if len(durations) == 0 || wall <= 0 || clients < 1 {
		return LatencyStats{}, fmt.Errorf("latency: %d durations, wall %v, %d clients: %w", len(durations), wall, clients, ErrInvalidArgument)
	}
	s := slices.Clone(durations)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return LatencyStats{
		Count:   len(s),
		Clients: clients,
		Mean:    time.Duration(sum / float64(len(s))),
		P50:     rank(50),
		P95:     rank(95),
		P99:     rank(99),
		Max:     s[len(s)-1],
		Wall:    wall,
		QPS:     float64(len(s)) / wall.Seconds(),
	}, nil
}

// MeasureLatency calls query(ctx, i) once for each i in [0, n) from
// clients goroutines that take the next index as they finish (a closed-loop
// load with clients users), timing each call, and summarises the run. The
// first error stops the run and is returned, as is a cancelled context.
// query must be safe for concurrent use when clients > 1. All goroutines
// have returned when MeasureLatency returns.
func MeasureLatency(ctx context.Context, n, clients int, query func(ctx context.Context, i int) error) (LatencyStats, error) {
	if n < 1 || clients < 1 {
		return LatencyStats{}, fmt.Errorf("latency: %d queries, %d clients: %w", n, clients, ErrInvalidArgument)
	}
	clients = min(clients, n)
	durations, wall, err := ClosedLoop(ctx, n, clients, func(ctx context.Context, _, i int) (time.Duration, error) {
		t0 := time.Now()
		if err := query(ctx, i); err != nil {
			return 0, fmt.Errorf("query %d: %w", i, err)
		}
		return time.Since(t0), nil
	})
	if err != nil {
		return LatencyStats{}, fmt.Errorf("latency: %w", err)
	}
	return SummarizeLatency(durations, max(wall, time.Nanosecond), clients)
}

// ClosedLoop calls call(ctx, client, i) once for each i in [0, n) from
// clients goroutines (client 0 .. clients-1, so a caller can give each its
// own connection) that take the next index as they finish: a closed-loop
// load with clients users. It returns the duration each call reports, by
// i, and the wall time of the whole loop. The first error cancels ctx for
// the others and is returned, as is a cancelled context. All goroutines
// have returned when ClosedLoop returns.
func ClosedLoop(ctx context.Context, n, clients int, call func(ctx context.Context, client, i int) (time.Duration, error)) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	durations := make([]time.Duration, n)
	var next atomic.Int64
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				d, err := call(ctx, c, i)
				if err != nil {
					once.Do(func() { firstErr = err })
					cancel()
					return
				}
				durations[i] = d
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if firstErr != nil {
		return nil, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return durations, wall, nil
}
