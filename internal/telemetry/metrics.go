// Package telemetry defines Ward's Prometheus metrics: certificate and CA
// expiry, handshakes by result and reason, sessions by link status,
// renewals, revocations, CRL age, heartbeat lag, and job and task counters.
package telemetry

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardcluster/ward/internal/buildinfo"
)

// Expiry is one certificate whose remaining lifetime is exported.
type Expiry struct {
	Kind     string // root_ca, issuing_ca, coordinator, agent, user
	Name     string
	Serial   string
	NotAfter time.Time
}

// Metrics is the coordinator's metric set on its own registry.
type Metrics struct {
	reg *prometheus.Registry

	Handshakes   *prometheus.CounterVec
	Sessions     *prometheus.GaugeVec
	Renewals     *prometheus.CounterVec
	Revocations  prometheus.Counter
	Jobs         *prometheus.CounterVec
	Tasks        *prometheus.CounterVec
	HeartbeatLag prometheus.Histogram
	StoreCommit  prometheus.Histogram
	StoreBatch   prometheus.Histogram
	// ListenerLimits counts connections a listener's caps closed (an old
	// one evicted for a new one) or refused, by the setting reached.
	ListenerLimits *prometheus.CounterVec
	// SessionLimits counts agent sessions ended or slowed by a session
	// limit, by the setting reached.
	SessionLimits *prometheus.CounterVec
}

// New registers every metric. expiries, crlAge and load are called at
// scrape time, so the figures are always current; load returns the tasks
// waiting for placement and the attempts on nodes.
func New(expiries func() []Expiry, crlAge func() (time.Duration, bool), load func() (queued, active int)) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.Handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ward_handshakes_total", Help: "TLS handshakes by listener, result (accepted or rejected) and reason code.",
	}, []string{"listener", "result", "reason"})
	m.Sessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ward_sessions", Help: "Open agent sessions by link status (YES, PARTLY, NO).",
	}, []string{"link"})
	m.Renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ward_cert_renewals_total", Help: "Certificates renewed, by role and path (session, heal, api).",
	}, []string{"role", "path"})
	m.Revocations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ward_cert_revocations_total", Help: "Certificates revoked.",
	})
	m.Jobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ward_jobs_total", Help: "Jobs by event: submitted, completed, failed, canceled.",
	}, []string{"event"})
	m.Tasks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ward_tasks_total", Help: "Task attempts by how they ended.",
	}, []string{"state"})
	m.HeartbeatLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ward_heartbeat_lag_seconds",
		Help:    "Heartbeat receive time minus the agent's send time (includes clock skew between machines).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	m.StoreCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ward_store_commit_seconds",
		Help:    "Time of one group commit to the store (one durable transaction for every write queued since the last).",
		Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
	})
	m.StoreBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ward_store_commit_writes",
		Help:    "Writes per group commit.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	})
	m.ListenerLimits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ward_listener_limit_total", Help: "Connections closed at a listener cap, by listener, limit (the setting) and action (evicted: an older connection made room; refused: the new one was closed).",
	}, []string{"listener", "limit", "action"})
	m.SessionLimits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ward_session_limit_total", Help: "Agent sessions that hit a session limit, by limit (the setting) and action (closed, or paused while output is stored).",
	}, []string{"limit", "action"})
	expiry := prometheus.NewDesc("ward_cert_expiry_seconds", "Seconds until a certificate or CA expires (negative: expired).", []string{"kind", "name", "serial"}, nil)
	crl := prometheus.NewDesc("ward_crl_age_seconds", "Seconds since the current CRL was signed.", nil, nil)
	queued := prometheus.NewDesc("ward_tasks_queued", "Tasks waiting for placement on a node (the queue depth).", nil, nil)
	active := prometheus.NewDesc("ward_tasks_active", "Task attempts assigned to or running on nodes.", nil, nil)
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ward_build_info", Help: "Always 1; the labels say which Ward the coordinator runs.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "go_version": bi.GoVersion},
	})
	build.Set(1)
	m.reg.MustRegister(m.Handshakes, m.Sessions, m.Renewals, m.Revocations, m.Jobs, m.Tasks, m.HeartbeatLag, m.StoreCommit, m.StoreBatch, m.ListenerLimits, m.SessionLimits, build,
		collector{descs: []*prometheus.Desc{expiry, crl, queued, active}, collect: func(ch chan<- prometheus.Metric) {
			now := time.Now()
			for _, e := range expiries() {
				ch <- prometheus.MustNewConstMetric(expiry, prometheus.GaugeValue, e.NotAfter.Sub(now).Seconds(), e.Kind, e.Name, e.Serial)
			}
			if age, ok := crlAge(); ok {
				ch <- prometheus.MustNewConstMetric(crl, prometheus.GaugeValue, age.Seconds())
			}
			q, a := load()
			ch <- prometheus.MustNewConstMetric(queued, prometheus.GaugeValue, float64(q))
			ch <- prometheus.MustNewConstMetric(active, prometheus.GaugeValue, float64(a))
		}},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type collector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
