// Package metrics holds authd's Prometheus instruments. HTTP metrics are
// labelled by chi route pattern, never the raw path, so cardinality stays
// bounded whatever clients send. The handler is served on its own listener
// (metrics.listen) so it is not public.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one registry with every authd instrument.
type Metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	tokens        *prometheus.CounterVec
	registrations *prometheus.CounterVec
	logins        *prometheus.CounterVec
	introspection *prometheus.CounterVec
	dbRefused     *prometheus.CounterVec
	exchanges     *prometheus.CounterVec
}

// PoolStats is what the database pool reports; the store's PoolStats
// converts to it in the composition root.
type PoolStats struct {
	Acquired, Idle, Total, Max int32
	AcquireCount, NewConns     int64
	AcquireWait                time.Duration
}

// New creates the registry with Go runtime and process collectors, and a
// pool collector when pool is non-nil.
func New(pool func() PoolStats) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
	}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authd_http_request_duration_seconds",
		Help:    "HTTP request latency by route pattern, method and status.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method", "status"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_token_requests_total", Help: "Token endpoint outcomes by grant type (issued, or the OAuth error code).",
	}, []string{"grant_type", "outcome"})
	m.registrations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_client_registrations_total", Help: "Dynamic client registration outcomes.",
	}, []string{"outcome"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_authorize_events_total", Help: "Authorization flow events (login, login_denied, login_failed per upstream; consent_approved, code_issued, ...).",
	}, []string{"event", "upstream"})
	m.introspection = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_introspections_total", Help: "Introspection results (active, inactive).",
	}, []string{"result"})
	m.dbRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_db_operations_refused_total",
		Help: "Database operations given up: past their deadline (deadline) or refused because too many were waiting (overloaded).",
	}, []string{"reason"})
	m.exchanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authd_token_exchanges_total",
		Help: "RFC 8693 token exchanges by kind (upstream, delegation, unknown) and outcome (issued, or the OAuth error code).",
	}, []string{"kind", "outcome"})
	m.reg.MustRegister(m.requests, m.latency, m.tokens, m.registrations, m.logins, m.introspection, m.dbRefused, m.exchanges)
	if pool != nil {
		m.reg.MustRegister(poolCollector(pool))
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records one finished HTTP request.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	code := strconv.Itoa(status)
	m.requests.WithLabelValues(route, method, code).Inc()
	m.latency.WithLabelValues(route, method, code).Observe(d.Seconds())
}

// ObserveToken records a token endpoint outcome.
func (m *Metrics) ObserveToken(grantType, outcome string) {
	m.tokens.WithLabelValues(grantType, outcome).Inc()
}

// ObserveExchange records a token exchange outcome.
func (m *Metrics) ObserveExchange(kind, outcome string) {
	m.exchanges.WithLabelValues(kind, outcome).Inc()
}

// ObserveAuthorizeEvent records an authorization flow event.
func (m *Metrics) ObserveAuthorizeEvent(event, upstream string) {
	m.logins.WithLabelValues(event, upstream).Inc()
}

// ObserveRegistration records a registration outcome.
func (m *Metrics) ObserveRegistration(outcome string) { m.registrations.WithLabelValues(outcome).Inc() }

// ObserveDBRefused records a database operation given up ("deadline") or
// refused ("overloaded").
func (m *Metrics) ObserveDBRefused(reason string) { m.dbRefused.WithLabelValues(reason).Inc() }

// ObserveIntrospection records whether an introspected token was active.
func (m *Metrics) ObserveIntrospection(active bool) {
	r := "inactive"
	if active {
		r = "active"
	}
	m.introspection.WithLabelValues(r).Inc()
}

type poolStatsCollector struct {
	stats                                       func() PoolStats
	acquired, idle, total, max, acquires, conns *prometheus.Desc
	wait                                        *prometheus.Desc
}

func poolCollector(stats func() PoolStats) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("authd_db_pool_"+name, help, nil, nil)
	}
	return &poolStatsCollector{
		stats:    stats,
		acquired: d("acquired_connections", "Connections in use."),
		idle:     d("idle_connections", "Idle connections."),
		total:    d("total_connections", "Open connections."),
		max:      d("max_connections", "Maximum pool size."),
		acquires: d("acquires_total", "Connection acquisitions."),
		conns:    d("new_connections_total", "Connections opened."),
		wait:     d("acquire_wait_seconds_total", "Time spent waiting for a connection."),
	}
}

func (c *poolStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.conns, c.wait} {
		ch <- d
	}
}

func (c *poolStatsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(s.Acquired))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.Idle))
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.Total))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.Max))
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(s.AcquireCount))
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(s.NewConns))
	ch <- prometheus.MustNewConstMetric(c.wait, prometheus.CounterValue, s.AcquireWait.Seconds())
}
