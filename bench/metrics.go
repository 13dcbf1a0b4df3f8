package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// histogram is a Prometheus histogram read from the text format.
type histogram struct {
	bounds []float64 // upper bounds, ascending, +Inf last
	counts []float64 // cumulative
	count  float64
	sum    float64 // of the observed values
}

func (h histogram) sub(o histogram) histogram {
	if len(o.counts) != len(h.counts) {
		return h
	}
	d := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts)), count: h.count - o.count, sum: h.sum - o.sum}
	for i := range h.counts {
		d.counts[i] = h.counts[i] - o.counts[i]
	}
	return d
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h histogram) quantile(q float64) float64 {
	if h.count <= 0 {
		return math.NaN()
	}
	want := q * h.count
	for i, c := range h.counts {
		if c >= want {
			return h.bounds[i]
		}
	}
	return math.Inf(1)
}

// scrapeLag reads ward_heartbeat_lag_seconds from GET /metrics.
func scrapeLag(ctx context.Context, a *adminAPI) (histogram, error) {
	h, _, err := scrapeMetrics(ctx, a)
	return h, err
}

// scrapeMetrics reads GET /metrics: the heartbeat lag histogram and every
// sample without labels (go_memstats_*, go_goroutines, ...).
func scrapeMetrics(ctx context.Context, a *adminAPI) (histogram, map[string]float64, error) {
	return scrapeHistogram(ctx, a, "ward_heartbeat_lag_seconds")
}

// metricLines fetches GET /metrics and returns its sample lines (comments
// dropped).
func metricLines(ctx context.Context, a *adminAPI) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

// sampleValue is the number at the end of a sample line.
func sampleValue(l string) (float64, error) {
	return strconv.ParseFloat(strings.TrimSpace(l[strings.LastIndex(l, " "):]), 64)
}

// scrapeHistogram reads GET /metrics: the histogram called name and every
// sample without labels.
func scrapeHistogram(ctx context.Context, a *adminAPI, name string) (histogram, map[string]float64, error) {
	plain := map[string]float64{}
	lines, err := metricLines(ctx, a)
	if err != nil {
		return histogram{}, plain, err
	}
	var h histogram
	found := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, name+"_bucket{"):
			i := strings.Index(l, `le="`)
			j := strings.Index(l[i+4:], `"`)
			le := l[i+4 : i+4+j]
			v, _ := sampleValue(l)
			b := math.Inf(1)
			if le != "+Inf" {
				b, _ = strconv.ParseFloat(le, 64)
			}
			h.bounds = append(h.bounds, b)
			h.counts = append(h.counts, v)
			found = true
		case strings.HasPrefix(l, name+"_count"):
			h.count, _ = sampleValue(l)
		case strings.HasPrefix(l, name+"_sum"):
			h.sum, _ = sampleValue(l)
		case !strings.Contains(l, "{"):
			if k, _, ok := strings.Cut(l, " "); ok {
				if f, err := sampleValue(l); err == nil {
					plain[k] = f
				}
			}
		}
	}
	if !found {
		return h, plain, fmt.Errorf("GET /metrics has no %s: the coordinator needs to export it", name)
	}
	return h, plain, nil
}

// scrapeSums reads GET /metrics and returns, for each named counter family,
// the sum of its samples over every label set.
func scrapeSums(ctx context.Context, a *adminAPI, names ...string) (map[string]float64, error) {
	lines, err := metricLines(ctx, a)
	if err != nil {
		return nil, err
	}
	sums := make(map[string]float64, len(names))
	for _, l := range lines {
		for _, n := range names {
			if !strings.HasPrefix(l, n) || (len(l) > len(n) && l[len(n)] != '{' && l[len(n)] != ' ') {
				continue
			}
			if v, err := sampleValue(l); err == nil {
				sums[n] += v
			}
		}
	}
	return sums, nil
}

// rateSampler polls counter families on GET /metrics every interval and
// keeps the highest per-second rate seen between consecutive polls.
type rateSampler struct {
	a     *adminAPI
	names []string
	mu    sync.Mutex
	peak  map[string]float64
	first map[string]float64
	last  map[string]float64
	stop  context.CancelFunc
	done  chan struct{}
}

// sampleRates starts a rateSampler; call finish to stop it.
func sampleRates(ctx context.Context, a *adminAPI, every time.Duration, names ...string) *rateSampler {
	s := &rateSampler{a: a, names: names, peak: map[string]float64{}, done: make(chan struct{})}
	ctx, s.stop = context.WithCancel(ctx)
	go func() {
		defer close(s.done)
		prev, err := scrapeSums(ctx, a, names...)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.first, s.last = prev, prev
		s.mu.Unlock()
		pt := time.Now()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cur, err := scrapeSums(ctx, a, names...)
			if err != nil {
				continue
			}
			now := time.Now()
			dt := now.Sub(pt).Seconds()
			s.mu.Lock()
			for _, n := range names {
				if r := (cur[n] - prev[n]) / dt; r > s.peak[n] {
					s.peak[n] = r
				}
			}
			s.last = cur
			s.mu.Unlock()
			prev, pt = cur, now
		}
	}()
	return s
}

// finish stops sampling and returns each family's peak rate per second and
// its total increase while sampling.
func (s *rateSampler) finish() (peak, total map[string]float64) {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	// One last scrape, so increases after the final tick are counted.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cur, err := scrapeSums(ctx, s.a, s.names...); err == nil && s.last != nil {
		s.last = cur
	}
	total = map[string]float64{}
	for _, n := range s.names {
		total[n] = s.last[n] - s.first[n]
	}
	return s.peak, total
}
