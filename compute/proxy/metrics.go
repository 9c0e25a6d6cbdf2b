package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are a Server's Prometheus collectors; Collector exposes them.
type metrics struct {
	accepted prometheus.Counter
	active   prometheus.Gauge
	cancels  prometheus.Counter
	errors   *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "connections_total",
			Help: "Client connections accepted.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "connections_active",
			Help: "Client connections spliced to an endpoint right now.",
		}),
		cancels: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "cancel_requests_total",
			Help: "CancelRequests forwarded to an endpoint.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "errors_total",
			Help: "Connections refused or dropped before the splice, by kind.",
		}, []string{"kind"}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.accepted.Describe(ch)
	m.active.Describe(ch)
	m.cancels.Describe(ch)
	m.errors.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.accepted.Collect(ch)
	m.active.Collect(ch)
	m.cancels.Collect(ch)
	m.errors.Collect(ch)
}

// Collector returns the proxy's metrics for a Prometheus registry:
// offshoot_proxy_connections_total, offshoot_proxy_connections_active,
// offshoot_proxy_cancel_requests_total and offshoot_proxy_errors_total{kind}
// (kinds: disconnect, timeout, tls, oversized, malformed, unsupported,
// no_route, unknown_branch, capacity, wake_failed, wake_timeout, shutdown,
// backend, unknown_cancel_key, internal).
func (s *Server) Collector() prometheus.Collector { return s.metrics }
