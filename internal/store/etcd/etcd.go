// Package etcd is the store.Store backend for several coordinators sharing
// one etcd cluster: every key lives under a prefix (one per Ward cluster),
// the store revision is etcd's, watches are etcd watches, and locks are
// etcd leases kept alive by the client (concurrency sessions and mutexes),
// so a lock held by a crashed or cut-off coordinator passes on after its
// TTL, and its Fence stops its late writes.
//
// The link to etcd is mutual TLS unless Options.InsecurePlaintext says
// otherwise; Open refuses to return a store it could not reach, and names
// the endpoint, the setting and the fix.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardcluster/ward/internal/store"
)

// Defaults for Options' zero values.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultCompactEvery   = time.Minute
	DefaultWatchBuffer    = 65536
	scanChunk             = 256
)

// DefaultLimits is the largest Txn Ward sends, and so what it requires of
// the etcd server (checked at Open): etcd's own defaults (128 ops, 1.5 MiB)
// are too small for a job of many tasks. Start etcd with
// --max-txn-ops=16384 --max-request-bytes=10485760.
var DefaultLimits = store.Limits{MaxOps: 16384, MaxBytes: 8 << 20}

// Options configures Open.
type Options struct {
	// Endpoints are the etcd client addresses, HOST:PORT each.
	Endpoints []string
	// TLS is the client side of the mutual TLS link (RootCAs and one
	// client certificate); nil only with InsecurePlaintext.
	TLS *TLS
	// InsecurePlaintext speaks plaintext gRPC to etcd. Anyone on the path
	// can then read and change every job, token and certificate record.
	InsecurePlaintext bool
	// Prefix namespaces every key, such as "/ward/prod/"; it must end in
	// "/". Clusters sharing one etcd use different prefixes.
	Prefix string
	// DialTimeout bounds Open's first contact with each endpoint.
	DialTimeout time.Duration
	// RequestTimeout bounds a Get, List, Scan chunk, Rev or Txn whose
	// context has no earlier deadline; past it the call fails with an
	// error wrapping store.ErrUnavailable.
	RequestTimeout time.Duration
	// Limits are the largest Txn this store sends; Open checks that the
	// server accepts them. Zero: DefaultLimits.
	Limits store.Limits
	// CompactEvery is how often the store compacts etcd's history, to the
	// revision it saw one period before (so at least one period of history
	// stays for watchers to catch up on). Zero: DefaultCompactEvery;
	// negative: never (the etcd server's --auto-compaction-* must then do
	// it, or etcd runs out of space).
	CompactEvery time.Duration
	// WatchBuffer is how many undelivered events one watcher may queue
	// before it is ended as fallen behind. Zero: DefaultWatchBuffer.
	WatchBuffer int
	// Logger gets the store's warnings (endpoints down at start, failed
	// compactions). Nil: slog.Default().
	Logger *slog.Logger
}

// Store is a store.Store on an etcd cluster. It is safe for concurrent use.
type Store struct {
	cli    *clientv3.Client
	opts   Options
	prefix string
	log    *slog.Logger

	// ctx is canceled by Close: every call, watch and lock wait derives
	// from it, so Close ends them all.
	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool

	mu     sync.Mutex // guards leases
	leases map[*lease]struct{}
	wg     sync.WaitGroup // background goroutines (compaction, watch pumps)
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd, checks that at least one endpoint answers and that
// the server accepts Txns of opts.Limits, and starts compaction. When no
// endpoint answers, the error carries one diagnosis per endpoint (see
// Diagnose). ctx bounds only the checks.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Limits == (store.Limits{}) {
		opts.Limits = DefaultLimits
	}
	if opts.CompactEvery == 0 {
		opts.CompactEvery = DefaultCompactEvery
	}
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = DefaultWatchBuffer
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		// Keepalive pings notice a dead endpoint while nothing is sent, so
		// the client moves to another one and lease keepalives go on.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		MaxCallSendMsgSize:   opts.Limits.MaxBytes + 2<<20,
		Logger:               zap.NewNop(),
	}
	if opts.TLS != nil {
		cfg.TLS = opts.TLS.Config()
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd store: connect to %s (%s): %w", strings.Join(opts.Endpoints, ","), SettingStore, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{cli: cli, opts: opts, prefix: opts.Prefix, log: log, ctx: sctx, cancel: cancel, leases: map[*lease]struct{}{}}
	if err := s.check(ctx); err != nil {
		cancel()
		cli.Close()
		return nil, err
	}
	if opts.CompactEvery > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.compactLoop() }()
	}
	return s, nil
}

func (o *Options) validate() error {
	switch {
	case len(o.Endpoints) == 0:
		return fmt.Errorf("etcd store: no endpoints: give them as %s etcd://HOST:PORT[,HOST:PORT...]", SettingStore)
	case o.TLS == nil && !o.InsecurePlaintext:
		return fmt.Errorf("etcd store: the link to etcd must be mutual TLS: pass %s, %s and %s (`ward etcd certs` makes them), or %s to accept an unencrypted, unauthenticated link",
			SettingCA, SettingCert, SettingKey, SettingPlaintext)
	case o.TLS != nil && o.InsecurePlaintext:
		return fmt.Errorf("etcd store: %s contradicts %s, %s and %s: choose TLS or plaintext", SettingPlaintext, SettingCA, SettingCert, SettingKey)
	case o.Prefix == "" || !strings.HasSuffix(o.Prefix, "/"):
		return fmt.Errorf("etcd store: key prefix %q must be non-empty and end in \"/\"", o.Prefix)
	}
	for _, ep := range o.Endpoints {
		if strings.Contains(ep, "://") || !strings.Contains(ep, ":") {
			return fmt.Errorf("etcd store: endpoint %q must be HOST:PORT", ep)
		}
	}
	return nil
}

// Endpoints returns the etcd endpoints, for log and status messages.
func (s *Store) Endpoints() []string { return s.opts.Endpoints }

// Prefix returns the key prefix every record lives under in etcd.
func (s *Store) Prefix() string { return s.prefix }

// Limits reports the largest Txn this store sends (Options.Limits).
func (s *Store) Limits() store.Limits { return s.opts.Limits }

// full maps a store key to its etcd key.
func (s *Store) full(key string) string { return s.prefix + key }

// short maps an etcd key back to the store key.
func (s *Store) short(key []byte) string { return string(key[len(s.prefix):]) }

// call derives the context of one request: canceled with ctx or by Close,
// and bounded by RequestTimeout when bounded is set.
func (s *Store) call(ctx context.Context, bounded bool) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	if !bounded {
		return cctx, func() { stop(); cancel() }, nil
	}
	tctx, tcancel := context.WithTimeout(cctx, s.opts.RequestTimeout)
	return tctx, func() { tcancel(); stop(); cancel() }, nil
}

// fail turns a client error into the store's: ErrClosed after Close, the
// caller's own context error, store.ErrUnavailable when etcd did not
// answer in time, else the error with what was being done.
func (s *Store) fail(ctx context.Context, what string, err error) error {
	switch {
	case s.closed.Load():
		return store.ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	case unavailable(err):
		return fmt.Errorf("%w: etcd at %s: %s: %v (check that etcd runs and has quorum: `etcdctl endpoint health`)",
			store.ErrUnavailable, strings.Join(s.opts.Endpoints, ","), what, err)
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%w: etcd: %s: %v (start etcd with --max-txn-ops=%d --max-request-bytes=%d or more)",
			store.ErrTxnTooLarge, what, err, s.opts.Limits.MaxOps, s.opts.Limits.MaxBytes+2<<20)
	case errors.Is(err, rpctypes.ErrNoSpace):
		return fmt.Errorf("%w: etcd: %s: %w (etcd reached its --quota-backend-bytes: compact and defragment it, `etcdctl defrag`, then `etcdctl alarm disarm`)", store.ErrNoSpace, what, err)
	}
	return fmt.Errorf("etcd: %s: %w", what, err)
}

// unavailable reports whether err means etcd did not answer (in time).
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(err, rpctypes.ErrLeaderChanged) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Get returns the record at key, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.Record, error) {
	cctx, done, err := s.call(ctx, true)
	if err != nil {
		return store.Record{}, err
	}
	defer done()
	resp, err := s.cli.Get(cctx, s.full(key))
	if err != nil {
		return store.Record{}, s.fail(ctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.Record{}, store.ErrNotFound
	}
	return s.record(resp.Kvs[0].Key, resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, resp.Kvs[0].ModRevision), nil
}

func (s *Store) record(key, value []byte, createRev, modRev int64) store.Record {
	return store.Record{Key: s.short(key), Value: value, CreateRev: createRev, ModRev: modRev}
}

// List returns every record under prefix in key order, from one snapshot.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Record, error) {
	cctx, done, err := s.call(ctx, true)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := s.cli.Get(cctx, s.full(prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, s.fail(ctx, "list "+prefix, err)
	}
	var recs []store.Record
	for _, kv := range resp.Kvs {
		recs = append(recs, s.record(kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision))
	}
	return recs, nil
}

// Scan calls fn for each record under prefix in key order. It reads a few
// hundred records per request and calls fn between requests, so fn may
// write; like bolt's, the scan is not one snapshot.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(store.Record) error) error {
	start := s.full(prefix)
	end := clientv3.GetPrefixRangeEnd(start)
	for {
		cctx, done, err := s.call(ctx, true)
		if err != nil {
			return err
		}
		resp, err := s.cli.Get(cctx, start, clientv3.WithRange(end), clientv3.WithLimit(scanChunk))
		done()
		if err != nil {
			return s.fail(ctx, "scan "+prefix, err)
		}
		for _, kv := range resp.Kvs {
			if err := fn(s.record(kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision)); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Rev returns etcd's current revision (a linearizable read).
func (s *Store) Rev(ctx context.Context) (int64, error) {
	cctx, done, err := s.call(ctx, true)
	if err != nil {
		return 0, err
	}
	defer done()
	resp, err := s.cli.Get(cctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.fail(ctx, "read the revision", err)
	}
	return resp.Header.Revision, nil
}

// Close revokes the leases this store holds (so their locks pass on at
// once, not after their TTL), ends every watch with store.ErrClosed and
// every blocked Lock, and closes the client. Later calls return
// store.ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return store.ErrClosed
	}
	s.mu.Lock()
	leases := s.leases
	s.leases = nil
	s.mu.Unlock()
	for l := range leases {
		l.revoke(time.Second)
	}
	s.cancel()
	s.wg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close the client: %w", err)
	}
	return nil
}

// compactLoop compacts etcd's history every CompactEvery to the revision
// seen one period earlier. Several coordinators may each do it: compacting
// to a revision already compacted is refused harmlessly.
func (s *Store) compactLoop() {
	t := time.NewTicker(s.opts.CompactEvery)
	defer t.Stop()
	var prev int64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		rev, err := s.Rev(s.ctx)
		if err != nil {
			continue
		}
		if prev > 0 {
			cctx, done, err := s.call(s.ctx, true)
			if err != nil {
				return
			}
			_, err = s.cli.Compact(cctx, prev)
			done()
			if err != nil && !errors.Is(err, rpctypes.ErrCompacted) && !s.closed.Load() {
				s.log.Warn("etcd compaction failed", "revision", prev, "err", err,
					"fix", "check etcd's health; without compaction etcd's database grows until its space quota stops every write")
			}
		}
		prev = rev
	}
}
