package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// etcdDispatchTarget is the tasks/s issue 13 asks of a coordinator on one
// local etcd.
const etcdDispatchTarget = 20000

// etcdTwin is the dispatch cluster again, on a store in one local etcd
// member (the real etcd server, its own process, fsync on, mutual TLS).
type etcdTwin struct {
	srv     *etcdtest.Server
	dir     string
	p       *inproc
	fleet   *agentFleet
	metrics *adminAPI // etcd's own /metrics, on its client port
}

// etcdHistograms are etcd's histograms read around each pass: its WAL
// fsync and its backend (bbolt) commit, the floor under every Ward commit.
var etcdHistograms = []string{"etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"}

func startEtcdTwin(ctx context.Context, r *Result) (*etcdTwin, error) {
	dir, err := os.MkdirTemp("", "ward-bench-etcd-")
	if err != nil {
		return nil, err
	}
	progress("dispatch: starting one local etcd (building its helper the first time)")
	srv, err := etcdtest.Start(dir, etcdtest.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	trackChild(srv.Pid())
	tw := &etcdTwin{srv: srv, dir: dir}
	tl, err := srv.TLS()
	if err != nil {
		tw.stop()
		return nil, err
	}
	// The cluster CA lives in etcd, its keys encrypted with this passphrase.
	passFile := filepath.Join(dir, "ca-passphrase")
	if err := os.WriteFile(passFile, []byte(rand.Text()+"\n"), 0o600); err != nil {
		tw.stop()
		return nil, err
	}
	tw.metrics = &adminAPI{client: &http.Client{Transport: &http.Transport{TLSClientConfig: tl.Config()}}, base: "https://" + srv.Endpoint}
	if opts.coordProcess {
		bin, err := wardBinary(ctx)
		if err != nil {
			tw.stop()
			return nil, err
		}
		cdir := filepath.Join(dir, "coordinator-process")
		if err := os.MkdirAll(cdir, 0o700); err != nil {
			tw.stop()
			return nil, err
		}
		p := &inproc{dir: cdir}
		if p.proc, err = startCoordinatorProcess(ctx, bin, cdir, "--store", "etcd://"+srv.Endpoint, "--etcd-ca", srv.CA, "--etcd-cert", srv.ClientCert, "--etcd-key", srv.ClientKey, "--ca-passphrase-file", passFile); err != nil {
			tw.stop()
			return nil, err
		}
		tw.p, err = p.connectAdmin(ctx, p.proc.contextPath)
	} else {
		tw.p, err = startCoordinator(ctx, "dispatch-etcd", func(cfg *config.Coordinator) {
			raiseJoinLimit(cfg)
			cfg.Store = "etcd://" + srv.Endpoint
			cfg.EtcdCA, cfg.EtcdCert, cfg.EtcdKey = srv.CA, srv.ClientCert, srv.ClientKey
			cfg.CAPassphraseFile = passFile
		})
	}
	if err != nil {
		tw.p = nil
		tw.stop()
		return nil, fmt.Errorf("coordinator on etcd: %w", err)
	}
	if tw.fleet, err = joinAgents(ctx, tw.p, "e", opts.dispatchAgents, opts.slots, 16, noopExec{}); err != nil {
		tw.stop()
		return nil, err
	}
	tw.fleet.run()
	if _, err := tw.p.admin.waitConnected(ctx, opts.dispatchAgents, time.Minute); err != nil {
		tw.stop()
		return nil, err
	}
	r.param("etcd_store", fmt.Sprintf("one local etcd member (go.etcd.io/etcd/server/v3 embed, its own process, fsync on, mutual TLS), --max-txn-ops %d; a coordinator with %d agents of its own", etcd.DefaultLimits.MaxOps, opts.dispatchAgents))
	return tw, nil
}

func (tw *etcdTwin) stop() {
	if tw.fleet != nil {
		tw.fleet.stop()
	}
	if tw.p != nil {
		tw.p.stop()
	}
	tw.srv.Stop()
	if !opts.keep {
		os.RemoveAll(tw.dir)
	} else {
		progress("kept %s", tw.dir)
	}
}

// etcdPass is one max-rate pass on the etcd twin with the store's commit
// histograms around it: Ward's (a Txn's round trip) and etcd's own.
type etcdPass struct {
	*passResult
	ward histogram
	etcd map[string]histogram
}

func (tw *etcdTwin) pass(ctx context.Context) (*etcdPass, error) {
	w0, _, werr := scrapeHistogram(ctx, tw.p.admin, "ward_store_commit_seconds")
	e0 := tw.scrapeEtcd(ctx)
	pr, err := maxRatePass(ctx, tw.p.admin, opts.tasks, opts.jobTasks, opts.submitters)
	if err != nil {
		return nil, err
	}
	ep := &etcdPass{passResult: pr, etcd: map[string]histogram{}}
	if w1, _, err := scrapeHistogram(ctx, tw.p.admin, "ward_store_commit_seconds"); err == nil && werr == nil {
		ep.ward = w1.sub(w0)
	}
	for name, h1 := range tw.scrapeEtcd(ctx) {
		if h0, ok := e0[name]; ok {
			ep.etcd[name] = h1.sub(h0)
		}
	}
	return ep, nil
}

func (tw *etcdTwin) scrapeEtcd(ctx context.Context) map[string]histogram {
	out := map[string]histogram{}
	for _, name := range etcdHistograms {
		if h, _, err := scrapeHistogram(ctx, tw.metrics, name); err == nil {
			out[name] = h
		}
	}
	return out
}

// etcdFigures reports the etcd twin's median pass beside bbolt's.
func etcdFigures(r *Result, passes []*etcdPass, bolt *passResult) {
	byRate := make([]*passResult, len(passes))
	for i, p := range passes {
		byRate[i] = p.passResult
	}
	med := medianPass(byRate)
	var ep *etcdPass
	for _, p := range passes {
		if p.passResult == med {
			ep = p
		}
	}
	r.fig("etcd_tasks_per_s", round(med.rate, 0), "/s").atLeast(etcdDispatchTarget).withNote("store on one local etcd, mTLS, max rate; median pass")
	r.fig("etcd_to_bbolt_ratio", round(med.rate/bolt.rate, 3), "").withNote("median etcd pass / median bbolt mTLS pass, same run, alternating")
	r.fig("etcd_max_rate_task_p50_ms", ms(percentile(med.taskLat, 50)), "ms")
	r.fig("etcd_max_rate_task_p99_ms", ms(percentile(med.taskLat, 99)), "ms")
	if ep.ward.count > 0 {
		d := med.elapsed.Seconds()
		r.fig("etcd_ward_commits_per_s", round(ep.ward.count/d, 0), "/s").withNote("Ward's group commits (one etcd Txn each) during the median pass")
		r.fig("etcd_ward_commit_p50_ms", ep.ward.quantile(0.5)*1000, "ms").withNote("bucket upper bound, ward_store_commit_seconds: the Txn's round trip")
		r.fig("etcd_ward_commit_p99_ms", ep.ward.quantile(0.99)*1000, "ms").withNote("bucket upper bound, ward_store_commit_seconds")
	}
	names := map[string]string{"etcd_disk_wal_fsync_duration_seconds": "etcd_wal_fsync", "etcd_disk_backend_commit_duration_seconds": "etcd_backend_commit"}
	for _, n := range etcdHistograms {
		h, ok := ep.etcd[n]
		if !ok || h.count == 0 {
			r.note("etcd's %s was not readable from its /metrics", n)
			continue
		}
		r.fig(names[n]+"_p50_ms", h.quantile(0.5)*1000, "ms").withNote("bucket upper bound, etcd's " + n)
		r.fig(names[n]+"_p99_ms", h.quantile(0.99)*1000, "ms").withNote("bucket upper bound, etcd's " + n)
	}
	if med.failed > 0 || med.retried > 0 || med.submitErrs > 0 {
		r.note("etcd max-rate pass: %d tasks did not complete, %d were retried, %d submits failed", med.failed, med.retried, med.submitErrs)
	}
}
