package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/forward"
	"github.com/wardcluster/ward/internal/staging"
	"github.com/wardcluster/ward/internal/transport"
)

// Staged files (inputs and outputs, by checksum) are kept on every
// coordinator sharing the store, not only on the leader that received
// them: the leader copies each new one to every live coordinator before it
// answers the upload, and a coordinator asked for one it lacks (it joined
// later, or a copy failed) fetches it from a peer that has it. So when the
// leader dies, the next one serves the inputs of the jobs it takes over
// and the outputs of the jobs that ran. Copies travel over mutual TLS with
// the coordinators' own certificates; only a coordinator of this cluster
// may send or fetch one, and every copy is checked against its checksum
// before it is kept.

// pathBlobReplica is where coordinators send and fetch copies:
// PUT or GET /v1/internal/blobs/sha256:HEX.
const pathBlobReplica = "/v1/internal/blobs/"

// headerBlobStored carries when the original of a copy was stored (or
// last claimed).
const headerBlobStored = "X-Ward-Blob-Stored"

// replicaTimeout bounds copying one file to the peers, or fetching it.
const replicaTimeout = 2 * time.Minute

// isBlobReplica reports whether r is a coordinator's copy request.
func isBlobReplica(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, pathBlobReplica) }

// serveBlobReplica answers a peer coordinator: PUT stores a copy, GET
// sends one. It runs on every coordinator, follower or leader.
func (c *Coordinator) serveBlobReplica(w http.ResponseWriter, r *http.Request) {
	by, err := forward.FromCoordinator(r.TLS, c.cfg.Cluster)
	if err == nil && forward.Forwarded(r) {
		err = errors.New("a copy request is never forwarded for another caller")
	}
	if err != nil {
		writeError(w, c, api.Errorf(api.CodePermissionDenied, "only coordinators exchange staged files", "%v", err))
		return
	}
	sum, err := staging.ParseSum(strings.TrimPrefix(r.URL.Path, pathBlobReplica))
	if err != nil {
		writeError(w, c, api.Errorf(api.CodeInvalidArgument, "", "%v", err))
		return
	}
	switch r.Method {
	case http.MethodGet:
		if err := c.serveLocalBlob(w, sum); err != nil {
			writeError(w, c, err)
		}
	case http.MethodPut:
		what := "copy of " + sum.String() + " from " + by.String()
		if r.ContentLength < 0 || r.ContentLength > c.cfg.StagingMaxFileBytes {
			writeError(w, c, staging.APIError(c.fileTooLarge(what)))
			return
		}
		if _, err := c.files.blobs.Put(c.uploadBody(w, r), sum, what, r.ContentLength, c.fileTooLarge(what)); err != nil {
			c.log.Warn("staged file copy refused", "from", by.String(), "sha256", sum.String(), "err", err)
			writeError(w, c, staging.APIError(err))
			return
		}
		// The copy is as old as the original, so the retention's cutoff
		// judges both alike.
		if t, err := time.Parse(time.RFC3339Nano, r.Header.Get(headerBlobStored)); err == nil {
			c.files.blobs.Touch(sum, t)
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		// The leader's staging retention removed it: so does this copy,
		// unless it was stored after the leader's cutoff.
		cutoff, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("older_than"))
		if err != nil {
			writeError(w, c, api.Errorf(api.CodeInvalidArgument, "", "older_than: %v", err))
			return
		}
		if _, err := c.files.blobs.RemoveIfOlder(sum, cutoff); err != nil {
			writeError(w, c, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, c, api.Errorf(api.CodeInvalidArgument, "", "%s %s: use GET, PUT or DELETE", r.Method, r.URL.Path))
	}
}

// removeReplicas asks every other live coordinator to remove its copies of
// sums that were stored before cutoff (the staging retention removed them
// here). A failure is logged; a copy left behind is removed by that
// coordinator's own retention pass if it leads one day.
func (c *Coordinator) removeReplicas(ctx context.Context, sums []staging.Sum, cutoff time.Time) {
	if len(sums) == 0 {
		return
	}
	c.eachPeer(ctx, func(ctx context.Context, client *http.Client, addr string) {
		for _, sum := range sums {
			u := "https://" + addr + pathBlobReplica + sum.String() + "?older_than=" + url.QueryEscape(cutoff.UTC().Format(time.RFC3339Nano))
			req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
			if err == nil {
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						err = fmt.Errorf("%s answered %s", addr, resp.Status)
					}
				}
			}
			if err != nil {
				c.log.Warn("cannot remove another coordinator's copy of a staged file the retention removed", "peer", addr, "sha256", sum.String(), "err", err)
				return
			}
		}
	})
}

// serveLocalBlob streams a blob this coordinator holds (404 if none).
func (c *Coordinator) serveLocalBlob(w http.ResponseWriter, sum staging.Sum) error {
	f, size, err := c.files.blobs.Open(sum)
	if errors.Is(err, staging.ErrNoBlob) {
		return api.Errorf(api.CodeNotFound, "", "%s is not on coordinator %s", sum, c.memberID())
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	staging.Copy(w, f, -1, nil)
	return nil
}

// peerClusterAddrs is every other live coordinator's cluster address.
func (c *Coordinator) peerClusterAddrs() []string {
	var out []string
	self := c.advertisedAddr(c.cfg.ClusterAddr)
	for _, a := range c.clusterAddrs() {
		if a != self {
			out = append(out, a)
		}
	}
	return out
}

// peerClient is an HTTP client to other coordinators' cluster ports, with
// this coordinator's certificate.
func (c *Coordinator) peerClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: c.leaderTLS(transport.HostOf(addr), transport.ALPNHTTP)}
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: false,
	}}
}

// replicateBlob copies a blob this coordinator just stored to every other
// live coordinator, in parallel, and waits for them (within
// replicaTimeout). A copy that fails is logged; the peer fetches it later
// when it needs it, from any coordinator that holds it.
func (c *Coordinator) replicateBlob(ctx context.Context, sum staging.Sum) {
	c.eachPeer(ctx, func(ctx context.Context, client *http.Client, addr string) {
		if err := c.putReplica(ctx, client, addr, sum); err != nil {
			c.log.Warn("cannot copy a staged file to another coordinator; it fetches it when it needs it", "peer", addr, "sha256", sum.String(), "err", err)
		}
	})
}

// eachPeer runs do for every other live coordinator, in parallel, and
// waits for them all, within replicaTimeout.
func (c *Coordinator) eachPeer(ctx context.Context, do func(ctx context.Context, client *http.Client, addr string)) {
	peers := c.peerClusterAddrs()
	if len(peers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	defer cancel()
	client := c.peerClient()
	var wg sync.WaitGroup
	for _, addr := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(ctx, client, addr)
		}()
	}
	wg.Wait()
}

func (c *Coordinator) putReplica(ctx context.Context, client *http.Client, addr string, sum staging.Sum) error {
	f, size, err := c.files.blobs.Open(sum)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "https://"+addr+pathBlobReplica+sum.String(), f)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if fi, err := f.Stat(); err == nil {
		req.Header.Set(headerBlobStored, fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	return nil
}

// fetchBlob gets a blob this coordinator lacks from the first peer that
// has it, keeping it (checked against sum) for next time.
func (c *Coordinator) fetchBlob(ctx context.Context, sum staging.Sum, what string) error {
	peers := c.peerClusterAddrs()
	if len(peers) == 0 {
		return staging.ErrNoBlob
	}
	ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	defer cancel()
	client := c.peerClient()
	var errs []string
	for _, addr := range peers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+pathBlobReplica+sum.String(), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			errs = append(errs, addr+": "+err.Error())
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			errs = append(errs, addr+": "+resp.Status)
			continue
		}
		_, err = c.files.blobs.Put(resp.Body, sum, what+" from "+addr, c.cfg.StagingMaxFileBytes, c.fileTooLarge(what))
		resp.Body.Close()
		if err != nil {
			errs = append(errs, addr+": "+err.Error())
			continue
		}
		c.log.Info("staged file fetched from another coordinator", "file", what, "sha256", sum.String(), "peer", addr)
		return nil
	}
	return fmt.Errorf("%w; no other coordinator had it (%s)", staging.ErrNoBlob, strings.Join(errs, "; "))
}

// openBlob opens a blob, fetching it from a peer first when this
// coordinator lacks it.
func (c *Coordinator) openBlob(ctx context.Context, sum staging.Sum, what string) (*os.File, int64, error) {
	f, size, err := c.files.blobs.Open(sum)
	if !errors.Is(err, staging.ErrNoBlob) {
		return f, size, err
	}
	if ferr := c.fetchBlob(ctx, sum, what); ferr != nil {
		if errors.Is(ferr, staging.ErrNoBlob) {
			return nil, 0, staging.ErrNoBlob
		}
		return nil, 0, ferr
	}
	return c.files.blobs.Open(sum)
}
