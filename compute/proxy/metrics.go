package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are a Server's Prometheus collectors; Collector exposes them.
type metrics struct {
	accepted prometheus.Counter
	active   prometheus.Gauge
	cancels  prometheus.Counter
	errors   *prometheus.CounterVec

	authFailures   *prometheus.CounterVec
	rateLimited    prometheus.Counter
	preauth        prometheus.Gauge
	preauthRefused *prometheus.CounterVec
	capRefused     *prometheus.CounterVec

	kernelPath  prometheus.Gauge
	splices     *prometheus.CounterVec
	kernelBytes *prometheus.CounterVec
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
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "auth_failures_total",
			Help: "Failed authentications at the proxy, by reason (wrong_password, unknown: both look the same to the client; protocol).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "auth_rate_limited_total",
			Help: "Authentication attempts refused because their source failed too often.",
		}),
		preauth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "connections_unauthenticated",
			Help: "Client connections that have not authenticated yet.",
		}),
		preauthRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "unauthenticated_refused_total",
			Help: "Connections refused because too many had not authenticated, by limit (source, total).",
		}, []string{"limit"}),
		capRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "cap_refused_total",
			Help: "Authenticated connections refused by a connection cap, by cap (branch, total).",
		}, []string{"cap"}),
		kernelPath: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "kernel_path_available",
			Help: "1 when the proxy forwards plain-text TCP connections in the kernel (BPF sockmap), 0 when every connection takes the copy loop.",
		}),
		splices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "splices_total",
			Help: "Connections that reached the steady state, by path (kernel, copy) and, for copy, reason (disabled, unavailable, tls, unix_client, pipelined, pair_failed, closed).",
		}, []string{"path", "reason"}),
		kernelBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offshoot", Subsystem: "proxy", Name: "kernel_bytes_total",
			Help: "Bytes the kernel forwarded on closed kernel-path connections, by direction (to_endpoint, to_client).",
		}, []string{"direction"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.accepted, m.active, m.cancels, m.errors,
		m.authFailures, m.rateLimited, m.preauth, m.preauthRefused, m.capRefused,
		m.kernelPath, m.splices, m.kernelBytes}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// Collector returns the proxy's metrics for a Prometheus registry:
// offshoot_proxy_connections_total, offshoot_proxy_connections_active,
// offshoot_proxy_cancel_requests_total, offshoot_proxy_errors_total{kind}
// (kinds: disconnect, timeout, tls, oversized, malformed, unsupported,
// no_route, unknown_branch, capacity, wake_failed, wake_timeout, shutdown,
// backend, unknown_cancel_key, auth_failed, rate_limited, preauth_full,
// conn_cap, auth_timeout, sasl, endpoint_auth, internal), and for
// authentication at the proxy offshoot_proxy_auth_failures_total{reason}
// (wrong_password, unknown, protocol), offshoot_proxy_auth_rate_limited_total,
// offshoot_proxy_connections_unauthenticated,
// offshoot_proxy_unauthenticated_refused_total{limit} (source, total) and
// offshoot_proxy_cap_refused_total{cap} (branch, total); for the steady
// state offshoot_proxy_kernel_path_available,
// offshoot_proxy_splices_total{path,reason} and
// offshoot_proxy_kernel_bytes_total{direction}.
func (s *Server) Collector() prometheus.Collector { return s.metrics }
