package telemetry

import "github.com/prometheus/client_golang/prometheus"

// StoreWrites is the store's write health at scrape time.
type StoreWrites struct {
	Writable bool
	// Outages counts the times writes started failing; Failures every
	// failed write attempt, retries included.
	Outages, Failures uint64
}

// WatchStoreWrites exports the store's write health, read from health at
// scrape time: ward_store_writable (1 or 0), ward_store_outages_total and
// ward_store_write_failures_total. Alert on ward_store_writable == 0: the
// coordinator refuses new work with STORE_UNAVAILABLE meanwhile.
func (m *Metrics) WatchStoreWrites(health func() StoreWrites) {
	writable := prometheus.NewDesc("ward_store_writable", "1 while the store accepts writes; 0 while writes fail (a full disk, an etcd outage) and new work is refused with STORE_UNAVAILABLE.", nil, nil)
	outages := prometheus.NewDesc("ward_store_outages_total", "Times the store's writes started failing.", nil, nil)
	failures := prometheus.NewDesc("ward_store_write_failures_total", "Failed store write attempts, retries included.", nil, nil)
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{writable, outages, failures}, collect: func(ch chan<- prometheus.Metric) {
		h := health()
		w := 0.0
		if h.Writable {
			w = 1
		}
		ch <- prometheus.MustNewConstMetric(writable, prometheus.GaugeValue, w)
		ch <- prometheus.MustNewConstMetric(outages, prometheus.CounterValue, float64(h.Outages))
		ch <- prometheus.MustNewConstMetric(failures, prometheus.CounterValue, float64(h.Failures))
	}})
}
