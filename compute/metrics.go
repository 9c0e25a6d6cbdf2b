package compute

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Manager's Prometheus collectors; Collector exposes them.
type metrics struct {
	m           *Manager
	wake        *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	crashes     prometheus.Counter
	endpoints   *prometheus.Desc
}

func newMetrics(m *Manager) *metrics {
	return &metrics{
		m: m,
		wake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "offshoot", Subsystem: "compute", Name: "wake_seconds",
			Help:    "Time from a wake request to Postgres answering, by the state woken from.",
			Buckets: []float64{.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 10, 30},
		}, []string{"from"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "compute", Name: "transitions_total",
			Help: "Endpoint state transitions.",
		}, []string{"from", "to"}),
		crashes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "compute", Name: "failures_total",
			Help: "Postmasters that died unexpectedly or failed to start.",
		}),
		endpoints: prometheus.NewDesc("offshoot_compute_endpoints", "Endpoints by state.", []string{"state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	x.wake.Describe(ch)
	x.transitions.Describe(ch)
	x.crashes.Describe(ch)
	ch <- x.endpoints
}

// Collect implements prometheus.Collector.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	x.wake.Collect(ch)
	x.transitions.Collect(ch)
	x.crashes.Collect(ch)
	counts := map[State]int{}
	x.m.mu.Lock()
	for _, ep := range x.m.endpoints {
		counts[ep.state]++
	}
	x.m.mu.Unlock()
	for _, s := range States {
		ch <- prometheus.MustNewConstMetric(x.endpoints, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// Collector returns the Manager's metrics for a Prometheus registry:
// offshoot_compute_wake_seconds{from} (histogram),
// offshoot_compute_endpoints{state}, offshoot_compute_transitions_total{from,to}
// and offshoot_compute_failures_total.
func (m *Manager) Collector() prometheus.Collector { return m.metrics }
